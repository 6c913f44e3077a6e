package mqtt

import "github.com/vigil-monitor/vigil/drivers"

// PublishAlarmEvent publishes one alarm event (JSON) on
// {prefix}/{site}/{room}/alarms: QoS 1, not retained, in call order with the
// readings.
func (p *Publisher) PublishAlarmEvent(payload []byte) {
	p.publishRoom("alarms", payload, false)
}

// PublishActiveAlarms publishes the current set of alarms (a JSON array) on
// {prefix}/{site}/{room}/alarms/active, retained, so a display that connects
// later sees what is alarming now.
func (p *Publisher) PublishActiveAlarms(payload []byte) {
	p.publishRoom("alarms/active", payload, true)
}

func (p *Publisher) publishRoom(suffix string, payload []byte, retained bool) {
	topic := p.roomTopic + suffix
	msg := outbound{topic: topic, payload: append([]byte(nil), payload...), retained: retained}
	if err := p.enqueue(msg, nil); err != nil {
		p.reportError(&PublishError{Topic: topic, Err: err})
	}
}

// AlarmEventTopic is the topic of alarm events, for a caller that commits
// them to the outbox (see Options.Outbox) instead of PublishAlarmEvent.
func (p *Publisher) AlarmEventTopic() string { return p.roomTopic + "alarms" }

// PublishSession publishes the room's dosing session (JSON, the public
// form: no clinic reference) on {prefix}/{site}/{room}/session, retained,
// so a display that connects later knows whether a session runs.
func (p *Publisher) PublishSession(payload []byte) {
	p.publishRoom(SessionTopicLevel, payload, true)
}

// ReadingTopic is the topic of a device's metric, for a caller that
// commits readings to the outbox (see Options.Outbox) instead of Consume.
func (p *Publisher) ReadingTopic(device string, metric drivers.MetricID) (string, error) {
	return p.readingTopic(device, metric)
}
