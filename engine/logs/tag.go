package logs

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"text/template"
	"time"
)

// defaultTag is dockerd's loggerutils.DefaultTemplate: the short ID.
const defaultTag = "{{.ID}}"

// tagInfo is what a tag template sees: the fields and methods of
// dockerd's logger.Info, so that the templates users have keep working.
type tagInfo struct {
	Config              map[string]string
	ContainerID         string
	ContainerName       string
	ContainerEntrypoint string
	ContainerArgs       []string
	ContainerImageID    string
	ContainerImageName  string
	ContainerCreated    time.Time
	ContainerEnv        []string
	ContainerLabels     map[string]string
	LogPath             string
	// DaemonName is "docker", as dockerd says: fluentd and Graylog
	// routing rules written for docker's tags keep matching.
	DaemonName string
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (i *tagInfo) ID() string          { return short(i.ContainerID) }
func (i *tagInfo) FullID() string      { return i.ContainerID }
func (i *tagInfo) Name() string        { return strings.TrimPrefix(i.ContainerName, "/") }
func (i *tagInfo) ImageID() string     { return short(i.ContainerImageID) }
func (i *tagInfo) ImageFullID() string { return i.ContainerImageID }
func (i *tagInfo) ImageName() string   { return i.ContainerImageName }
func (i *tagInfo) Command() string {
	return strings.Join(append([]string{i.ContainerEntrypoint}, i.ContainerArgs...), " ")
}
func (i *tagInfo) Hostname() (string, error) { return os.Hostname() }

// tagFuncs are dockerd's template functions (daemon/logger/templates).
var tagFuncs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return strings.TrimSpace(string(b))
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(s string, prefix, suffix int) string {
		return strings.Repeat(" ", max(prefix, 0)) + s + strings.Repeat(" ", max(suffix, 0))
	},
	"truncate": func(s string, n int) string {
		if n >= 0 && len(s) > n {
			return s[:n]
		}
		return s
	},
}

// renderTag executes the container's tag option, or def when it has none.
func renderTag(c Container, def string) (string, error) {
	text := c.LogConfig.Config["tag"]
	if text == "" {
		text = def
	}
	tmpl, err := template.New("log-tag").Funcs(tagFuncs).Parse(text)
	if err != nil {
		return "", invalid("tag: %v", err)
	}
	info := &tagInfo{
		Config: c.LogConfig.Config, ContainerID: c.ID, ContainerName: c.Name,
		ContainerEntrypoint: c.Path, ContainerArgs: c.Args, ContainerImageID: c.ImageID, ContainerImageName: c.ImageName,
		ContainerCreated: c.Created, ContainerEnv: c.Env, ContainerLabels: c.Labels, LogPath: LogPath(c), DaemonName: "docker",
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, info); err != nil {
		return "", invalid("tag: %v", err)
	}
	return b.String(), nil
}
