package mqtt

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
