// Package embedded runs a NATS server with JetStream inside the calling
// process: the single-machine default of package distributed, and what its
// tests and demo run against. It listens on 127.0.0.1 unless told
// otherwise, so that a server started with the defaults is not reachable
// from the network.
//
// Production deployments point producers and nodes at a real NATS cluster
// instead (see docs/distributed.md); a ConfigFile in the nats-server
// configuration format gives the embedded server the same TLS, accounts,
// users and permissions a real one would have.
package embedded

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
)

// Defaults of Config's zero fields.
const (
	DefaultHost       = "127.0.0.1"
	DefaultPort       = 4222
	DefaultMaxPayload = 8 << 20
)

// RandomPort as Config.Port picks a free port.
const RandomPort = -1

// Config configures an embedded server.
type Config struct {
	// Dir is where JetStream keeps its files (required, unless ConfigFile
	// sets store_dir). Streams in file storage survive a restart of a
	// server with the same Dir.
	Dir string
	// Host is the address to listen on (default 127.0.0.1, or the
	// ConfigFile's). Listening on other interfaces is a decision: give the
	// server TLS and authentication first.
	Host string
	// Port is the client port (default 4222, or the ConfigFile's;
	// RandomPort picks a free one).
	Port int
	// MaxPayload is the largest message the server accepts, headers
	// included (default 8 MiB, or the ConfigFile's; NATS's own default is
	// 1 MiB, too small for 1 MiB jobs).
	MaxPayload int32
	// ConfigFile, if set, is a nats-server configuration file read first:
	// TLS, accounts, users, permissions and anything else the format
	// allows. The fields above override it where they are set.
	ConfigFile string
	// Configure, if set, is called with the server's options last, for
	// what neither the fields above nor a file say.
	Configure func(*server.Options)
	// Logger receives the server's log lines (default: none). Notices are
	// logged at Info, debug and trace lines only if the logger's level
	// allows them.
	Logger hclog.Logger
	// ReadyTimeout bounds the start-up (default 10s).
	ReadyTimeout time.Duration
}

// Server is a running embedded server.
type Server struct {
	srv *server.Server
}

// Start starts a server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
	}
	if cfg.Host != "" {
		opts.Host = cfg.Host
	}
	if opts.Host == "" {
		opts.Host = DefaultHost // nats-server's own default is every interface
	}
	if cfg.Port != 0 {
		opts.Port = cfg.Port
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if cfg.MaxPayload != 0 {
		opts.MaxPayload = cfg.MaxPayload
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if cfg.Dir != "" {
		opts.StoreDir = cfg.Dir
	}
	if opts.StoreDir == "" {
		return nil, errors.New("embedded: no JetStream directory (Config.Dir)")
	}
	opts.JetStream = true
	opts.NoSigs = true // the process's signals are its owner's
	opts.NoLog = cfg.Logger == nil
	if cfg.Configure != nil {
		cfg.Configure(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if cfg.Logger != nil {
		l := cfg.Logger
		srv.SetLoggerV2(logger{l}, l.IsDebug(), l.IsTrace(), false)
	}
	srv.Start()
	wait := cfg.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded: server not ready for connections on %s:%d within %v", opts.Host, opts.Port, wait)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded: JetStream did not start")
	}
	return &Server{srv: srv}, nil
}

// URL returns the URL clients connect to, e.g. nats://127.0.0.1:4222 (the
// scheme is nats:// also with TLS; the client negotiates it).
func (s *Server) URL() string { return s.srv.ClientURL() }

// NATS returns the server itself, for what this package does not wrap.
func (s *Server) NATS() *server.Server { return s.srv }

// Shutdown stops the server and waits until it has stopped: its clients
// are disconnected (they reconnect to a server started again on the same
// port), its files are flushed and closed.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// logger adapts an hclog.Logger to the server's Logger.
type logger struct{ l hclog.Logger }

func (g logger) Noticef(format string, v ...any) { g.l.Info(fmt.Sprintf(format, v...)) }
func (g logger) Warnf(format string, v ...any)   { g.l.Warn(fmt.Sprintf(format, v...)) }
func (g logger) Fatalf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g logger) Errorf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g logger) Debugf(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g logger) Tracef(format string, v ...any)  { g.l.Trace(fmt.Sprintf(format, v...)) }
