// Package all registers every Vigil driver: import it for its side effect
// wherever the registry must be complete (the agent, the simulator,
// `vigil devices`).
package all

import (
	_ "github.com/vigil-monitor/vigil/drivers/masimo" // masimo-ascii
)
