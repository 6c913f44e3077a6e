// Package all registers every Vigil driver: import it for its side effect
// wherever the registry must be complete (the agent, the simulator,
// `vigil devices`).
package all

import (
	_ "github.com/vigil-monitor/vigil/drivers/contec"  // contec-cms50
	_ "github.com/vigil-monitor/vigil/drivers/hl7"     // hl7-mllp
	_ "github.com/vigil-monitor/vigil/drivers/masimo"  // masimo-ascii
	_ "github.com/vigil-monitor/vigil/drivers/nonin"   // nonin-df2, nonin-df7, nonin-df8, nonin-ascii
	_ "github.com/vigil-monitor/vigil/drivers/suntech" // suntech-advantage
)
