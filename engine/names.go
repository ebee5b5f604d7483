package engine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
)

// validName is Docker's container name rule (after an optional "/").
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// checkName validates a requested name and strips its "/".
func checkName(name string) (string, error) {
	if !validName.MatchString(name) {
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	return strings.TrimPrefix(name, "/"), nil
}

// nameConflict is Docker's message for a name in use.
func nameConflict(name, holder string) error {
	return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, holder))
}

// reserveName takes name for id, atomically: of any number of concurrent
// reservations of one name exactly one succeeds. An empty name picks a
// free random one, as Docker does. Called with e.mu held.
func (e *Engine) reserveNameLocked(name, id string) (string, error) {
	if name != "" {
		if holder, ok := e.names[name]; ok {
			return "", nameConflict(name, holder)
		}
		e.names[name] = id
		return name, nil
	}
	for i := 0; ; i++ {
		n := randomName(i >= 10)
		if _, ok := e.names[n]; !ok {
			e.names[n] = id
			return n, nil
		}
	}
}

// releaseName frees name if id holds it; called with e.mu held.
func (e *Engine) releaseNameLocked(name, id string) {
	if e.names[name] == id {
		delete(e.names, name)
	}
}

// Random names are adjective_surname, like Docker's; the surnames are
// scientists and engineers, as there.
var (
	adjectives = []string{
		"admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "beautiful",
		"blissful", "bold", "boring", "brave", "busy", "charming", "clever", "compassionate",
		"competent", "condescending", "confident", "cool", "cranky", "crazy", "dazzling", "determined",
		"distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "eloquent",
		"epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty",
		"funny", "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore",
		"heuristic", "hopeful", "hungry", "infallible", "inspiring", "intelligent", "interesting", "jolly",
		"jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
		"musing", "mystifying", "naughty", "nervous", "nice", "nifty", "nostalgic", "objective",
		"optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky", "quizzical",
		"recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly",
		"sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty",
		"trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
		"xenodochial", "youthful", "zealous", "zen",
	}
	surnames = []string{
		"agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata", "austin",
		"babbage", "banach", "bardeen", "bartik", "bassi", "bell", "bhabha", "bhaskara",
		"blackwell", "bohr", "booth", "borg", "bose", "boyd", "brahmagupta", "brattain",
		"brown", "carson", "cerf", "chandrasekhar", "chaplygin", "chatelet", "chatterjee", "chebyshev",
		"clarke", "cohen", "colden", "cori", "cray", "curie", "darwin", "davinci",
		"dewdney", "dhawan", "diffie", "dijkstra", "dirac", "driscoll", "dubinsky", "easley",
		"edison", "einstein", "elgamal", "elion", "ellis", "engelbart", "euclid", "euler",
		"faraday", "feistel", "fermat", "fermi", "feynman", "franklin", "gagarin", "galileo",
		"galois", "gates", "gauss", "germain", "goldberg", "goldstine", "goldwasser", "golick",
		"goodall", "hamilton", "haslett", "hawking", "heisenberg", "hellman", "hermann", "herschel",
		"hertz", "heyrovsky", "hodgkin", "hofstadter", "hoover", "hopper", "hugle", "hypatia",
		"jackson", "jang", "jennings", "jepsen", "johnson", "joliot", "jones", "kalam",
		"kapitsa", "kare", "keldysh", "keller", "kepler", "khorana", "kilby", "kirch",
		"knuth", "kowalevski", "lalande", "lamarr", "lamport", "leakey", "leavitt", "lederberg",
		"lehmann", "lewin", "lichterman", "liskov", "lovelace", "lumiere", "mahavira", "margulis",
		"matsumoto", "maxwell", "mayer", "mccarthy", "mcclintock", "mclean", "mcnulty", "meitner",
		"mendel", "mendeleev", "merkle", "mestorf", "mirzakhani", "moore", "morse", "murdock",
		"napier", "nash", "neumann", "newton", "nightingale", "nobel", "noether", "northcutt",
		"noyce", "panini", "pare", "pascal", "pasteur", "payne", "perlman", "pike",
		"poincare", "poitras", "ptolemy", "raman", "ramanujan", "ride", "ritchie", "robinson",
		"roentgen", "rosalind", "rubin", "saha", "sammet", "satoshi", "shamir", "shannon",
		"shaw", "shirley", "shockley", "sinoussi", "snyder", "spence", "stonebraker", "sutherland",
		"swanson", "swartz", "swirles", "taussig", "tesla", "thompson", "torvalds", "turing",
		"varahamihira", "visvesvaraya", "volhard", "wescoff", "wilbur", "wiles", "williams", "wilson",
		"wing", "wozniak", "wright", "wu", "yalow", "yonath", "zhukovsky",
	}
)

// randomName returns adjective_surname; with suffix, a random number is
// appended (after repeated collisions).
func randomName(suffix bool) string {
	pick := func(l []string) string {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(l))))
		return l[n.Int64()]
	}
	name := pick(adjectives) + "_" + pick(surnames)
	if name == "boring_wozniak" { // Steve Wozniak is not boring (Docker's rule)
		return randomName(suffix)
	}
	if suffix {
		n, _ := rand.Int(rand.Reader, big.NewInt(10))
		name += n.String()
	}
	return name
}

// newID returns 64 random hex digits that do not start like an existing
// short ID would read as a number only (Docker avoids all-digit short IDs:
// they are ambiguous with numbers in some tools).
func newID() string {
	for {
		var b [32]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		if strings.Trim(id[:12], "0123456789") != "" {
			return id
		}
	}
}
