//go:build !linux

package frontend

import (
	"context"
	"errors"
	"log/slog"
)

// parkSupported: no poller on this platform; connections keep their reader.
const parkSupported = false

type poller struct{}

func newPoller(*slog.Logger) (*poller, error) {
	return nil, errors.New("frontend: parking is not supported on this platform")
}

func (p *poller) arm(*agent) error    { return errors.New("frontend: parking is not supported") }
func (p *poller) disarm(*agent)       {}
func (p *poller) run(context.Context) {}
