package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Outbox age limits, in seconds: a message normally leaves the outbox as
// soon as the broker acknowledges it (milliseconds); one waiting 30 s means
// the broker is not taking messages, five minutes an outage.
const (
	outboxAgeWarn  = 30
	outboxAgeAlarm = 300
)

// rateOf is a per-second rate summed by the given labels.
func rateOf(by, series string) string {
	return `sum by (` + by + `) (rate(` + series + `[$__rate_interval]))`
}

func increaseOf(by, series string) string {
	return `sum by (` + by + `) (increase(` + series + `[$__rate_interval]))`
}

func latencyQuantile(q string) string {
	return `histogram_quantile(` + q + `, sum by (le) (rate(vigil_alarm_notify_latency_seconds_bucket{` + roomSelector + `}[$__rate_interval])))`
}

func healthDashboard(_ []alarm.Rule) (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("Vigil agent health").
		Uid("vigil-agent-health").
		Description("Is the monitoring itself working: the agent, its broker connection and outbox, the devices' serial links, the notifications.").
		Tags([]string{tag}).
		Editable().
		Refresh("30s").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(siteVariable()).
		WithVariable(roomVariable()).
		WithVariable(deviceVariable()).
		Link(otherDashboards())

	upDown := func(up, down string) []dashboard.ValueMapping {
		return []dashboard.ValueMapping{valueText("1", up, colourNormal, "0", down, colourHigh)}
	}

	// Row 1: the state now.
	b = b.WithPanel(bigStat("Agent", "Whether Prometheus scrapes the agent (job vigil, configs/prometheus).").
		GridPos(gridPos(0, 0, 4, 4)).
		WithTarget(instant("A", `up{job="vigil", `+roomSelector+`}`, "")).
		Mappings(upDown("UP", "DOWN")))
	b = b.WithPanel(bigStat("MQTT", "The agent's connection to the broker.").
		GridPos(gridPos(4, 0, 4, 4)).
		WithTarget(instant("A", `vigil_mqtt_connected{`+roomSelector+`}`, "")).
		Mappings(upDown("connected", "DISCONNECTED")))
	b = b.WithPanel(bigStat("Store", "The local store (readings, outbox, sessions). Without it readings are only published live.").
		GridPos(gridPos(8, 0, 4, 4)).
		WithTarget(instant("A", `vigil_store_up{`+roomSelector+`}`, "")).
		Mappings(upDown("open", "NOT OPEN")))
	b = b.WithPanel(bigStat("Oldest in outbox", "Age of the oldest message the broker has not acknowledged. Yellow from 30 s, red from 5 min; -1: the store cannot be read.").
		GridPos(gridPos(12, 0, 4, 4)).
		WithTarget(instant("A", `vigil_outbox_oldest_age_seconds{`+roomSelector+`}`, "")).
		Unit(unitDuration).
		Thresholds(thresholds(fixedSteps(colourNormal, outboxAgeWarn, colourMedium, outboxAgeAlarm, colourHigh))).
		Mappings([]dashboard.ValueMapping{valueText("0", "empty", colourNormal, "-1", "UNREADABLE", colourHigh)}))
	b = b.WithPanel(bigStat("Notifications given up", "Notifications no channel retry could deliver, in the time range. Each one is an alarm somebody may not have received.").
		GridPos(gridPos(16, 0, 4, 4)).
		WithTarget(instant("A", `round(sum(increase(vigil_notifications_total{`+roomSelector+`, result="give_up"}[$__range])))`, "")).
		Decimals(0).
		Thresholds(thresholds(fixedSteps(colourNormal, 1, colourHigh))))
	b = b.WithPanel(bigStat("Version", "The agent's version.").
		GridPos(gridPos(20, 0, 4, 4)).
		WithTarget(instant("A", `vigil_build_info{`+roomSelector+`}`, "{{version}}")).
		TextMode(common.BigValueTextModeName).
		ColorMode(common.BigValueColorModeNone))

	// Row 2: the broker path.
	b = b.WithPanel(timeline("MQTT connection", "Connected and disconnected periods.").
		GridPos(gridPos(0, 4, 12, 5)).
		WithTarget(trend("A", `vigil_mqtt_connected{`+roomSelector+`}`, "broker")).
		Mappings(upDown("connected", "disconnected")))
	b = b.WithPanel(trendPanel("Outbox", "Messages waiting for the broker's acknowledgement (left) and the age of the oldest (right).", "short").
		GridPos(gridPos(12, 4, 12, 5)).
		WithTarget(trend("A", `vigil_outbox_depth{`+roomSelector+`}`, "messages")).
		WithTarget(trend("B", `vigil_outbox_oldest_age_seconds{`+roomSelector+`}`, "oldest")).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{unitValue(unitSeconds), {Id: "custom.axisPlacement", Value: "right"}}))

	// Row 3: the serial links.
	b = b.WithPanel(trendPanel("Frame errors", "Frames the decoders rejected per second, by device and reason (checksum, malformed, invalid_value): a bad cable, a wrong baud rate or a wrong driver.", "short").
		GridPos(gridPos(0, 9, 12, 8)).
		WithTarget(trend("A", rateOf("device, result", `vigil_frames_total{`+deviceSelector+`, result!="ok"}`), "{{device}} {{result}}")).
		WithTarget(trend("B", rateOf("device", `vigil_discarded_bytes_total{`+deviceSelector+`}`), "{{device}} discarded bytes")))
	b = b.WithPanel(trendPanel("Device reconnects", "Reconnections after the first connect: an unplugged cable, a device switched off, a serial link that went silent.", "short").
		GridPos(gridPos(12, 9, 12, 8)).
		WithTarget(trend("A", increaseOf("device", `vigil_device_reconnects_total{`+deviceSelector+`}`), "{{device}}")).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(60))
	b = b.WithPanel(trendPanel("Readings", "Readings per second by device and metric: the devices' pace.", "short").
		GridPos(gridPos(0, 17, 12, 8)).
		WithTarget(trend("A", rateOf("device, metric", `vigil_readings_total{`+deviceSelector+`}`), "{{device}} {{metric}}")))
	b = b.WithPanel(timeline("Device conditions", "Technical conditions per device: sensor off, searching, low signal quality, cuff error, sensor fault, disconnected, silent.").
		GridPos(gridPos(12, 17, 12, 8)).
		WithTarget(trend("A", `max by (device, condition) (vigil_device_condition{`+deviceSelector+`})`, "{{device}} {{condition}}")).
		Mappings([]dashboard.ValueMapping{valueText("1", "present", colourMedium, "0", "ok", colourNormal)}))

	// Row 4: the alarm and notification path.
	b = b.WithPanel(trendPanel("Notifications", "Notification attempts by channel and result: delivered, retry, give_up.", "short").
		GridPos(gridPos(0, 25, 12, 8)).
		WithTarget(trend("A", increaseOf("channel, result", `vigil_notifications_total{`+roomSelector+`}`), "{{channel}} {{result}}")).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(60).
		OverrideByRegexp(".*give_up", []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": colourHigh}}}).
		OverrideByRegexp(".*retry", []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": colourMedium}}}))
	b = b.WithPanel(trendPanel("Notification latency", "From an alarm event to a channel accepting it (the alarm signal generation delay, clinical.md 1).", unitSeconds).
		GridPos(gridPos(12, 25, 12, 8)).
		WithTarget(trend("A", latencyQuantile("0.5"), "p50")).
		WithTarget(trend("B", latencyQuantile("0.95"), "p95")).
		WithTarget(trend("C", latencyQuantile("0.99"), "p99")))
	b = b.WithPanel(trendPanel("Alarm events", "Alarms raised, by kind and priority.", "short").
		GridPos(gridPos(0, 33, 12, 8)).
		WithTarget(trend("A", increaseOf("kind, priority", `vigil_alarm_events_total{`+roomSelector+`, phase="start"}`), "{{kind}} {{priority}}")).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(60))
	b = b.WithPanel(trendPanel("Errors", "Publishes the broker did not acknowledge, failed store commits, and outbox messages dropped to stay within its bounds. All should stay at zero.", "short").
		GridPos(gridPos(12, 33, 12, 8)).
		WithTarget(trend("A", increaseOf("site, room", `vigil_mqtt_publish_errors_total{`+roomSelector+`}`), "MQTT publish errors")).
		WithTarget(trend("B", increaseOf("site, room", `vigil_store_errors_total{`+roomSelector+`}`), "store errors")).
		WithTarget(trend("C", increaseOf("site, room", `vigil_outbox_dropped_total{`+roomSelector+`}`), "outbox dropped")))

	return build(b)
}
