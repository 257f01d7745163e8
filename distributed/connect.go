package distributed

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect connects to the NATS servers at url (a comma-separated list) with
// the options this package's producers and nodes want, followed by opts:
// reconnect forever (jobs and results wait in their streams meanwhile),
// every 250ms, with a 64 MiB buffer for what is published while
// reconnecting. Pass the usual nats options for the rest:
//
//	nats.RootCAs("ca.pem")                          // TLS: trust this CA
//	nats.ClientCert("client.pem", "client-key.pem") // TLS: client certificate
//	nats.UserCredentials("app.creds")               // JWT and NKey seed
//	nats.NkeyOptionFromSeed("user.nk")              // NKey seed file (returns an option and an error)
//	nats.UserInfo("user", "password")
//	nats.Name("billing-node-3")
//
// Later options win, so opts can override the defaults.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.RetryOnFailedConnect(false),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("distributed: connect to %s: %w", url, err)
	}
	return nc, nil
}
