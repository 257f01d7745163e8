package distributed

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config's zero fields.
const (
	DefaultPrefix     = "procpool"
	DefaultDuplicates = 2 * time.Minute
	DefaultResultTTL  = time.Hour
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 5
)

// Config names the subjects and streams that jobs, results and dead letters
// travel through, and holds the settings of the streams and consumers that
// producers and nodes create when they are missing. The producers and nodes
// of one deployment must agree on it: the stream and consumer settings take
// effect when they are created, by whoever comes first, and are not changed
// afterwards (change them with the nats CLI or a JetStream client).
//
// The zero Config is usable: prefix "procpool", file storage, one replica,
// messages bounded by the server's max_payload, a 2-minute
// de-duplication window, results kept an hour, an ack wait of 30s and at
// most 5 deliveries per job.
type Config struct {
	// Prefix begins every subject and stream name (default "procpool").
	// Like job type names, it must be letters, digits, '-' and '_' only,
	// so that it is one subject token and a valid stream name.
	Prefix string

	// Storage of the streams created: jetstream.FileStorage (the zero
	// value: jobs survive a server restart) or jetstream.MemoryStorage.
	Storage jetstream.StorageType
	// Replicas of the streams created (default 1; 3 on a 3-server cluster
	// keeps jobs through the loss of a server).
	Replicas int
	// MaxMsgSize bounds one job's or result's message, headers included,
	// in the streams created (default 0: the server's max_payload). A job
	// whose message would exceed its stream's limit or the server's
	// max_payload fails at submission with an error matching
	// procpool.ErrPayloadTooLarge.
	MaxMsgSize int32
	// Duplicates is the streams' de-duplication window (default 2m): a job
	// published twice with the same id within it is stored once, and so is
	// a job's result.
	Duplicates time.Duration
	// ResultTTL is how long a result that no producer consumed is kept
	// (default 1h), and how long a producer's result consumer outlives
	// the producer if it is not closed.
	ResultTTL time.Duration

	// AckWait is how long a node may hold a job without a sign of life
	// before the server delivers it again (default 30s). A node sends an
	// in-progress ack every AckWait/3 while a job runs, so a long job is
	// not redelivered while its node lives; a node that dies loses its
	// jobs to the others after at most AckWait.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one job (default 5). A job that
	// fails with a retryable error on its last delivery, or is delivered
	// once more than this because the nodes of its earlier deliveries
	// died, is moved to the dead-letter subject. Nodes enforce it
	// themselves (the consumer's own MaxDeliver is unlimited), so that a
	// job is never left in its stream undelivered and unreported.
	MaxDeliver int

	// NoCreate makes producers and nodes fail when a stream or consumer is
	// missing instead of creating it, for deployments whose credentials
	// may only look streams up; create them beforehand with Setup.
	NoCreate bool

	// Logger receives warnings (default: none).
	Logger hclog.Logger
}

// withDefaults returns c with its zero fields filled in.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.ResultTTL == 0 {
		c.ResultTTL = DefaultResultTTL
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}

// ErrInvalidConfig reports an unusable Config, job type name or job id.
var ErrInvalidConfig = errors.New("distributed: invalid configuration")

// validate reports every problem of c (with defaults applied).
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if !validToken(c.Prefix) {
		bad("prefix %q: want letters, digits, '-' and '_' only", c.Prefix)
	}
	if c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage {
		bad("unknown storage %d", c.Storage)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("replicas %d: want 1 to 5", c.Replicas)
	}
	if c.MaxMsgSize < 0 {
		bad("negative MaxMsgSize %d", c.MaxMsgSize)
	}
	if c.Duplicates < 0 || c.ResultTTL < 0 || c.AckWait < 0 {
		bad("negative duration (Duplicates %v, ResultTTL %v, AckWait %v)", c.Duplicates, c.ResultTTL, c.AckWait)
	}
	if c.AckWait > 0 && c.AckWait < 300*time.Millisecond {
		bad("AckWait %v is below 300ms: in-progress acks could not keep up", c.AckWait)
	}
	if c.ResultTTL > 0 && c.ResultTTL < c.Duplicates {
		bad("ResultTTL %v is shorter than the de-duplication window %v", c.ResultTTL, c.Duplicates)
	}
	if c.MaxDeliver < 1 {
		bad("MaxDeliver %d: want at least 1", c.MaxDeliver)
	}
	return errors.Join(errs...)
}

// validToken reports whether s is a non-empty run of letters, digits, '-'
// and '_': one subject token, and a legal part of a stream or consumer name.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkJobType reports a job type name that cannot name a subject token and
// a stream.
func checkJobType(name string) error {
	if !validToken(name) {
		return fmt.Errorf("%w: job type %q: a distributed job type is 1 to 64 letters, digits, '-' and '_'", ErrInvalidConfig, name)
	}
	return nil
}

// The names of subjects, streams and consumers. Every rule that ties a name
// to another lives here.

// JobSubject is the subject jobs of a type are published to:
// <prefix>.jobs.<jobType>.
func (c Config) JobSubject(jobType string) string {
	return c.withDefaults().Prefix + ".jobs." + jobType
}

// JobStream is the stream holding the jobs of a type (work-queue
// retention): <prefix>_jobs_<jobType>.
func (c Config) JobStream(jobType string) string {
	return c.withDefaults().Prefix + "_jobs_" + jobType
}

// NodeConsumer is the durable pull consumer of a job stream that every
// node serving the job type shares.
const NodeConsumer = "nodes"

// ResultSubject is the subject a producer's results are published to:
// <prefix>.results.<producerID>.
func (c Config) ResultSubject(producerID string) string {
	return c.withDefaults().Prefix + ".results." + producerID
}

// ResultStream is the stream holding results until their producer
// consumes them (work-queue retention): <prefix>_results.
func (c Config) ResultStream() string { return c.withDefaults().Prefix + "_results" }

// resultConsumer is the durable consumer of a producer's results.
func resultConsumer(producerID string) string { return "results_" + producerID }

// DeadLetterSubject is the subject a job type's dead letters are published
// to: <prefix>.dead.<jobType>.
func (c Config) DeadLetterSubject(jobType string) string {
	return c.withDefaults().Prefix + ".dead." + jobType
}

// DeadLetterStream is the stream keeping every job type's dead letters
// until an operator removes them (limits retention, no age limit):
// <prefix>_dead.
func (c Config) DeadLetterStream() string { return c.withDefaults().Prefix + "_dead" }
