package builder

import (
	"context"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/sys/signal"
	"time"
)

// runStage builds one stage: its base, the ONBUILD triggers the base
// carries, then its instructions.
func (bd *build) runStage(ctx context.Context, st *stage) error {
	bd.emit(ctx, Event{Kind: EventStep, Stage: st.label(), Instruction: st.def.SourceCode})
	s, err := bd.baseState(ctx, st)
	if err != nil {
		return err
	}
	if err := bd.done(ctx, s); err != nil {
		return err
	}
	if triggers := s.img.Config.OnBuild; len(triggers) > 0 {
		s.img.Config.OnBuild = nil
		s.key = stepKey(s.key, "ONBUILD triggers run")
		for _, trig := range triggers {
			cmd, err := parseTrigger(trig)
			if err != nil {
				return lineError(bd.df.name, st.def.Location, fmt.Errorf("ONBUILD trigger %q of the base image: %w", trig, err))
			}
			bd.printer.addSteps(1)
			bd.emit(ctx, Event{Kind: EventStep, Stage: st.label(), Instruction: "ONBUILD " + trig})
			if err := bd.dispatch(ctx, st, s, cmd, st.def.Location); err != nil {
				return err
			}
		}
	}
	for _, cmd := range st.def.Commands {
		bd.emit(ctx, Event{Kind: EventStep, Stage: st.label(), Instruction: instructionText(cmd)})
		if err := bd.dispatch(ctx, st, s, cmd, cmd.Location()); err != nil {
			return err
		}
	}
	st.state = s
	return nil
}

func instructionText(cmd instructions.Command) string {
	if s, ok := cmd.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.ToUpper(cmd.Name())
}

func parseTrigger(expr string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, fmt.Errorf("an ONBUILD trigger must be a single instruction")
	}
	return instructions.ParseCommand(res.AST.Children[0])
}

// done reports the end of a step with the ID of the state it left.
func (bd *build) done(ctx context.Context, s *state) error {
	_, id, err := s.encode()
	if err != nil {
		return err
	}
	bd.emit(ctx, Event{Kind: EventStepDone, ID: id.String()})
	return nil
}

// dispatch runs one instruction on the stage's state s.
func (bd *build) dispatch(ctx context.Context, st *stage, s *state, cmd instructions.Command, loc []parser.Range) error {
	if err := bd.expand(s, cmd); err != nil {
		return lineError(bd.df.name, loc, err)
	}
	var err error
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		err = bd.runRun(ctx, s, c)
	case *instructions.CopyCommand:
		err = bd.runCopy(ctx, s, copyOf(c))
	case *instructions.AddCommand:
		err = bd.runCopy(ctx, s, addOf(c))
	case *instructions.WorkdirCommand:
		err = bd.runWorkdir(ctx, s, c)
	default:
		err = bd.metadata(ctx, s, cmd)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), bd.df.name+":") {
			return err
		}
		return lineError(bd.df.name, loc, err)
	}
	return nil
}

// expand substitutes variables in the instruction's words, with the
// state's environment (ENV and the ARGs in scope); ARG values are
// expanded by metadata itself, as BuildKit does.
func (bd *build) expand(s *state, cmd instructions.Command) error {
	if _, isArg := cmd.(*instructions.ArgCommand); !isArg {
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			err := ex.Expand(func(word string) (string, error) {
				w, _, err := bd.lexer().ProcessWord(word, s.env)
				return w, err
			})
			if err != nil {
				return err
			}
		}
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
		lex := shell.NewLex('\\')
		lex.SkipProcessQuotes = true
		return ex.ExpandRaw(func(word string) (string, error) {
			w, _, err := lex.ProcessWord(word, s.env)
			return w, err
		})
	}
	return nil
}

// metadata runs an instruction that changes only the config (and the
// environment): it is applied, then its result taken from the cache when
// the key is known, so that an unchanged rebuild keeps the history's
// times and the image ID.
func (bd *build) metadata(ctx context.Context, s *state, cmd instructions.Command) error {
	now := time.Now()
	var keyParts []any
	switch c := cmd.(type) {
	case *instructions.EnvCommand:
		msg := "ENV"
		for _, kv := range c.Env {
			s.setEnv(kv.Key, kv.Value)
			msg += " " + kv.Key + "=" + kv.Value
		}
		s.addHistory(msg, false, now)
		keyParts = []any{"ENV", c.Env}
	case *instructions.ArgCommand:
		var parts []string
		for _, kv := range c.Args {
			bd.useArg(kv.Key)
			if v, ok := bd.buildArgs[kv.Key]; ok {
				kv.Value = &v
			} else if kv.Value != nil {
				v, _, err := bd.lexer().ProcessWord(*kv.Value, s.env)
				if err != nil {
					return err
				}
				kv.Value = &v
			} else if v, ok := bd.global.Get(kv.Key); ok {
				kv.Value = &v
			}
			if kv.Value != nil {
				s.env = s.env.set(kv.Key, *kv.Value)
			}
			s.args = append(s.args, kv)
			p := kv.Key
			if kv.Value != nil {
				p += "=" + *kv.Value
			}
			parts = append(parts, p)
		}
		s.addHistory("ARG "+strings.Join(parts, " "), false, now)
		keyParts = []any{"ARG", parts}
	case *instructions.LabelCommand:
		if s.img.Config.Labels == nil {
			s.img.Config.Labels = map[string]string{}
		}
		msg := "LABEL"
		for _, kv := range c.Labels {
			s.img.Config.Labels[kv.Key] = kv.Value
			msg += " " + kv.Key + "=" + kv.Value
		}
		s.addHistory(msg, false, now)
		keyParts = []any{"LABEL", c.Labels}
	case *instructions.MaintainerCommand:
		s.img.Author = c.Maintainer
		s.addHistory("MAINTAINER "+c.Maintainer, false, now)
		keyParts = []any{"MAINTAINER", c.Maintainer}
	case *instructions.CmdCommand:
		args := c.CmdLine
		if c.PrependShell {
			args = s.withShell(args)
		}
		s.img.Config.Cmd = args
		s.img.Config.ArgsEscaped = true //nolint:staticcheck // BuildKit still sets it, for docker's sake
		s.cmdSet = true
		s.addHistory(fmt.Sprintf("CMD %q", args), false, now)
		keyParts = []any{"CMD", args}
	case *instructions.EntrypointCommand:
		args := c.CmdLine
		if c.PrependShell {
			args = s.withShell(args)
		}
		s.img.Config.Entrypoint = args
		s.img.Config.ArgsEscaped = true //nolint:staticcheck // as CMD
		if !s.cmdSet {
			s.img.Config.Cmd = nil
		}
		s.addHistory(fmt.Sprintf("ENTRYPOINT %q", args), false, now)
		keyParts = []any{"ENTRYPOINT", args, s.cmdSet}
	case *instructions.HealthCheckCommand:
		hc := *c.Health
		s.img.Config.Healthcheck = &dockerspec.HealthcheckConfig{
			Test: hc.Test, Interval: hc.Interval, Timeout: hc.Timeout,
			StartPeriod: hc.StartPeriod, StartInterval: hc.StartInterval, Retries: hc.Retries,
		}
		s.addHistory(fmt.Sprintf("HEALTHCHECK %+v", *s.img.Config.Healthcheck), false, now)
		keyParts = []any{"HEALTHCHECK", s.img.Config.Healthcheck}
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			words, err := bd.lexer().ProcessWords(p, s.env)
			if err != nil {
				return err
			}
			for _, w := range words {
				ps, err := exposedPorts(w)
				if err != nil {
					return err
				}
				ports = append(ports, ps...)
			}
		}
		if s.img.Config.ExposedPorts == nil {
			s.img.Config.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			s.img.Config.ExposedPorts[p] = struct{}{}
		}
		s.addHistory(fmt.Sprintf("EXPOSE %v", ports), false, now)
		keyParts = []any{"EXPOSE", ports}
	case *instructions.UserCommand:
		s.img.Config.User = c.User
		s.addHistory("USER "+c.User, false, now)
		keyParts = []any{"USER", c.User}
	case *instructions.VolumeCommand:
		if s.img.Config.Volumes == nil {
			s.img.Config.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return fmt.Errorf("VOLUME specified can not be an empty string")
			}
			s.img.Config.Volumes[v] = struct{}{}
		}
		s.addHistory(fmt.Sprintf("VOLUME %v", c.Volumes), false, now)
		keyParts = []any{"VOLUME", c.Volumes}
	case *instructions.StopSignalCommand:
		if _, err := signal.ParseSignal(c.Signal); err != nil {
			return fmt.Errorf("STOPSIGNAL %s: %w", c.Signal, err)
		}
		s.img.Config.StopSignal = c.Signal
		s.addHistory("STOPSIGNAL "+c.Signal, false, now)
		keyParts = []any{"STOPSIGNAL", c.Signal}
	case *instructions.ShellCommand:
		s.img.Config.Shell = c.Shell
		s.addHistory(fmt.Sprintf("SHELL %v", c.Shell), false, now)
		keyParts = []any{"SHELL", c.Shell}
	case *instructions.OnbuildCommand:
		s.img.Config.OnBuild = append(s.img.Config.OnBuild, c.Expression)
		keyParts = []any{"ONBUILD", c.Expression}
	default:
		return fmt.Errorf("instruction %s: %w", strings.ToUpper(cmd.Name()), errdefs.ErrNotImplemented)
	}
	key := stepKey(s.key, keyParts...)
	hit, err := bd.cached(ctx, s, key)
	if err != nil {
		return err
	}
	if hit {
		bd.emit(ctx, Event{Kind: EventCached})
	} else {
		s.key = key
		if err := bd.remember(s); err != nil {
			return err
		}
	}
	return bd.done(ctx, s)
}

// exposedPorts parses an EXPOSE word ("80", "80/udp", "8000-8002/tcp")
// into "port/proto" entries.
func exposedPorts(w string) ([]string, error) {
	portPart, proto, _ := strings.Cut(w, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("invalid port %q: protocol %q: want tcp, udp or sctp", w, proto)
	}
	// docker accepts (and ignores) an ip:hostport: prefix.
	if i := strings.LastIndex(portPart, ":"); i >= 0 {
		if host, _, err := net.SplitHostPort(portPart[:i] + ":0"); err == nil && host != "" && net.ParseIP(strings.Trim(host, "[]")) == nil && strings.Count(portPart, ":") > 1 {
			return nil, fmt.Errorf("invalid port %q", w)
		}
		portPart = portPart[i+1:]
	}
	lo, hi, isRange := strings.Cut(portPart, "-")
	start, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || start == 0 {
		return nil, fmt.Errorf("invalid port %q", w)
	}
	end := start
	if isRange {
		if end, err = strconv.ParseUint(hi, 10, 16); err != nil || end < start {
			return nil, fmt.Errorf("invalid port range %q", w)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, strconv.FormatUint(p, 10)+"/"+proto)
	}
	return out, nil
}

// normalizeWorkdir resolves WORKDIR p against the current one.
func normalizeWorkdir(cur, p string) string {
	if !path.IsAbs(p) {
		if cur == "" {
			cur = "/"
		}
		p = path.Join(cur, p)
	}
	return path.Clean(p)
}

// runWorkdir sets the working dir and creates it when missing (owned by
// the current USER), as BuildKit does; an existing dir gives no layer.
func (bd *build) runWorkdir(ctx context.Context, s *state, c *instructions.WorkdirCommand) error {
	wd := normalizeWorkdir(s.img.Config.WorkingDir, c.Path)
	s.img.Config.WorkingDir = wd
	key := stepKey(s.key, "WORKDIR", wd, s.img.Config.User)
	hit, err := bd.cached(ctx, s, key)
	if err != nil {
		return err
	}
	if hit {
		s.workdirOK = true
		bd.emit(ctx, Event{Kind: EventCached})
		return bd.done(ctx, s)
	}
	var layer bool
	exists := wd == "/"
	if !exists {
		// Most WORKDIRs name a dir the image has or a step just made:
		// looked up in the layers, no snapshot to mount.
		if dirs, err := bd.b.images.LayerDirs(s.layers); err == nil {
			found, sure := existsInLowers(dirs, wd)
			exists = found && sure
		}
	}
	if !exists {
		l, err := bd.onRootfs(ctx, s, "WORKDIR "+wd, s.layers, func(root string) error {
			uid, gid, err := bd.resolveUser(root, s.img.Config.User)
			if err != nil {
				return err
			}
			return mkdirInRoot(root, wd, 0o755, &owner{uid, gid})
		})
		if err != nil {
			return err
		}
		if l != nil {
			s.layers = append(s.layers, *l)
			layer = true
		}
	}
	s.workdirOK = true
	s.addHistory("WORKDIR "+wd, layer, time.Now())
	s.key = key
	if err := bd.remember(s); err != nil {
		return err
	}
	return bd.done(ctx, s)
}
