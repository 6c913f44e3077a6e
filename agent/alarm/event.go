// Package alarm holds Vigil's clinical alarm model: priorities, kinds and
// states after IEC 60601-1-8 (clinical.md section 1), and the event an alarm
// emits at each change, in the shape of IHE PCD ACM / FHIR DeviceAlert.
package alarm

import "time"

// Priority is an alarm's urgency, by the operator response it demands.
type Priority uint8

const (
	Low    Priority = iota + 1 // awareness
	Medium                     // prompt response
	High                       // immediate response
)

// String is the config spelling: low, medium, high.
func (p Priority) String() string {
	switch p {
	case Low:
		return "low"
	case Medium:
		return "medium"
	case High:
		return "high"
	}
	return "unknown"
}

// Marker is the text marker that tells priorities apart without colour or
// sound (IEC 60601-1-8; clinical.md 1): "***" high, "**" medium, "*" low.
func (p Priority) Marker() string {
	switch p {
	case High:
		return "***"
	case Medium:
		return "**"
	case Low:
		return "*"
	}
	return ""
}

// ParsePriority reads low, medium or high.
func ParsePriority(s string) (Priority, bool) {
	switch s {
	case "low":
		return Low, true
	case "medium":
		return Medium, true
	case "high":
		return High, true
	}
	return 0, false
}

// Kind separates the patient's condition from the system's.
type Kind string

const (
	Physiological Kind = "physiological" // a vital sign out of limits
	Technical     Kind = "technical"     // the system cannot monitor (sensor off, device lost, broker down)
	Advisory      Kind = "advisory"      // information that needs attention but not at once (missed scheduled reading)
)

// State is where an alarm stands.
type State string

const (
	Inactive     State = "inactive"     // condition not met
	Pending      State = "pending"      // condition met, its delay not yet over
	Active       State = "active"       // alarming
	Acknowledged State = "acknowledged" // someone took it; signalling stops until the condition clears
	Latched      State = "latched"      // condition cleared, still signalling until acknowledged
	Resolved     State = "resolved"     // over
)

// Phase says which part of an alarm occurrence an event reports.
type Phase string

const (
	PhaseStart  Phase = "start"
	PhaseUpdate Phase = "update"
	PhaseEnd    Phase = "end"
)

// Event is one change of one alarm, as notifiers, MQTT and the audit log see
// it. It carries no patient identifier: room, device, metric, value, limit,
// priority and times only (privacy rule of the project).
type Event struct {
	AlarmID  string   `json:"alarm_id"` // stable for a rule on a device, e.g. "spo2-low-medium/oximeter-1"
	EventID  string   `json:"event_id"` // one occurrence: correlates its start, updates and end
	Phase    Phase    `json:"phase"`
	Kind     Kind     `json:"kind"`
	Priority Priority `json:"-"`
	State    State    `json:"state"`

	Metric    string   `json:"metric,omitempty"`    // catalogue name, e.g. "spo2"
	Value     *float64 `json:"value"`               // the value that violated the limit; nil for technical alarms
	Unit      string   `json:"unit,omitempty"`      // UCUM
	Limit     *float64 `json:"limit"`               // the violated limit
	Condition string   `json:"condition,omitempty"` // "below", "above", "rise_over_baseline", or the technical condition
	Text      string   `json:"text"`                // one line for people, starting with the priority marker

	Site    string  `json:"site"`
	Room    string  `json:"room"`
	Device  string  `json:"device,omitempty"`
	Session *string `json:"session"` // opaque session id, nil outside a session

	Onset time.Time `json:"onset"` // when the condition began
	Sent  time.Time `json:"sent"`  // when this event was emitted

	// AckURL is the signed acknowledge link for this alarm, when the agent
	// serves one; notifiers put it in their message.
	AckURL string `json:"ack_url,omitempty"`
}

// PriorityName is the priority's config spelling, for JSON encoders.
func (e Event) PriorityName() string { return e.Priority.String() }
