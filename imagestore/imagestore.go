// Package imagestore is Berth's image store: content-addressed blobs
// (imagestore/content), layers unpacked once per chain ID (imagestore/layer),
// overlay snapshots for containers (imagestore/snapshot) and image metadata
// (imagestore/meta), with pulls and pushes through go-containerregistry.
//
// Names given to the Store are normalized the way Docker and containerd do
// ("busybox" is "docker.io/library/busybox:latest"); images are identified by
// their config digest ("sha256:..."), which is what CRI calls the image ID.
// Every method is safe for concurrent use. Errors carry a containerd/errdefs
// class (ErrNotFound, ErrInvalidArgument, ErrConflict/ErrFailedPrecondition,
// ErrUnavailable, ...) so that the CRI and HTTP fronts map them in one place.
package imagestore

import (
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Config configures a Store.
type Config struct {
	// Root is the directory that holds blobs/, layers/, snapshots/ and the
	// metadata database.
	Root string
	// RegistryConfigDir is a containerd-style hosts directory
	// (<dir>/<host>/hosts.toml) for mirrors, insecure registries and certs.
	RegistryConfigDir string
	// DockerConfig is the path of a docker config.json used for credentials
	// when a pull or push brings none of its own. Empty means
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json.
	DockerConfig string
	// StallTimeout fails a transfer that receives no byte for this long.
	StallTimeout time.Duration
	// MaxConcurrentDownloads bounds the layers fetched at once per pull.
	MaxConcurrentDownloads int
}

// Image is what the store knows of one image.
type Image struct {
	// ID is the config digest.
	ID digest.Digest
	// RepoTags are normalized "name:tag" references.
	RepoTags []string
	// RepoDigests are normalized "name@sha256:<manifest digest>" references.
	RepoDigests []string
	// ManifestDigest and ManifestMediaType describe the platform manifest.
	ManifestDigest    digest.Digest
	ManifestMediaType string
	// Size is the stored size: manifest, config and compressed layers.
	Size int64
	// UnpackedSize is the sum of the layers' unpacked sizes.
	UnpackedSize int64
	// Layers in order, base first.
	Layers []Layer
	// Config is the image config (env, entrypoint, user, labels, ...).
	Config ocispec.Image
	// RawConfig is the config blob as stored, with what ocispec.Image
	// leaves out (docker's Healthcheck, OnBuild, Shell, ...).
	RawConfig []byte
	// Pinned images are never removed by GC.
	Pinned bool
	// Pulled is when the image was first stored here.
	Pulled time.Time
}

// Layer describes one layer of an image.
type Layer struct {
	Digest    digest.Digest // compressed blob digest
	MediaType string
	Size      int64         // compressed size
	DiffID    digest.Digest // uncompressed digest
	ChainID   digest.Digest
	// UnpackedSize is the layer's size unpacked (docker's history SIZE).
	UnpackedSize int64
}

// Auth holds registry credentials for one pull or push. The zero value means
// "use the docker config file, else anonymous".
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 "user:password"
	IdentityToken string
	RegistryToken string
}

// Progress reports the state of one layer during a pull or push.
type Progress struct {
	// ID is the short (12 hex) digest of the layer, or the reference for
	// whole-image lines.
	ID string
	// Status is one of docker's words: "Pulling fs layer", "Waiting",
	// "Downloading", "Verifying Checksum", "Download complete",
	// "Extracting", "Pull complete", "Already exists", "Preparing",
	// "Pushing", "Pushed", "Layer already exists".
	Status  string
	Current int64
	Total   int64
}

// PullOptions configure one pull.
type PullOptions struct {
	Auth *Auth
	// Platform selects from a manifest list; nil means the host's.
	Platform *ocispec.Platform
	// Progress, when set, is called from the pull's goroutines (serialized).
	Progress func(Progress)
}

// PushOptions configure one push.
type PushOptions struct {
	Auth     *Auth
	Progress func(Progress)
}

// RemoveOptions configure Remove.
type RemoveOptions struct {
	// Force removes an image that has several tags when it is named by ID.
	Force bool
}

// Removed says what a Remove did, in docker's terms.
type Removed struct {
	Untagged []string
	Deleted  []digest.Digest
}

// Usage is what the store occupies on disk.
type Usage struct {
	// Mountpoint is the directory whose filesystem holds the store.
	Mountpoint string
	Bytes      uint64
	Inodes     uint64
}

// ArchiveFormat names a tarball format for Save.
type ArchiveFormat int

const (
	// DockerArchive is `docker save`'s format (manifest.json, repositories),
	// with an OCI layout (index.json, oci-layout) in the same tar as docker
	// 25+ writes it.
	DockerArchive ArchiveFormat = iota
	// OCIArchive is a tarred OCI image layout.
	OCIArchive
)

// Mount is one mount of a snapshot, as mount(2) and the OCI spec take it.
type Mount struct {
	Type    string
	Source  string
	Options []string
}
