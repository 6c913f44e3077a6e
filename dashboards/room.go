package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Data-age limits of the oximeter, in seconds. A value leaves the scrape
// metrics.stale_after (10 s by default) after its last reading, and
// clinical.md 4 calls SpO2 stale when silent for more than 15 s.
const (
	oximeterAgeWarn  = 10
	oximeterAgeStale = 15
	// A blood pressure is taken every few minutes; metrics.nibp_stale_after
	// (20 min by default) is when the value leaves the scrape.
	nibpAgeStale = 20 * 60
	// neverRead: the agent exports 0 as the last reading's time before the
	// first reading, so the age is then the whole Unix epoch.
	neverRead = 1e9
)

// dataAge is the age of the last reading of the devices that take metric
// (an oximeter for spo2, a blood-pressure monitor for nibp_systolic).
// vigil_readings_total has a series per metric a device's driver takes,
// from the start, so it tells the device kinds apart.
func dataAge(metric string) string {
	return `time() - (vigil_last_reading_timestamp_seconds{` + deviceSelector + `}` +
		` and on (site, room, device) vigil_readings_total{` + deviceSelector + `, metric="` + metric + `"})`
}

func ageMappings() []dashboard.ValueMapping {
	return []dashboard.ValueMapping{rangeText(ptr(float64(neverRead)), nil, "NEVER", colourHigh, 0)}
}

func roomDashboard(rules []alarm.Rule) (dashboard.Dashboard, error) {
	spo2 := limitsOf(rules, "spo2")
	pulse := limitsOf(rules, "pulse_rate")
	systolic := limitsOf(rules, "nibp_systolic")
	diastolic := limitsOf(rules, "nibp_diastolic")
	mean := limitsOf(rules, "nibp_mean")

	b := dashboard.NewDashboardBuilder("Vigil room").
		Uid("vigil-room").
		Description("One treatment room: the patient's vital signs against the alarm limits, the alarms in force, the devices and the session.").
		Tags([]string{tag}).
		Editable().
		Refresh("5s").
		Time("now-30m", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(siteVariable()).
		WithVariable(roomVariable()).
		WithVariable(deviceVariable()).
		Link(otherDashboards())

	// Row 1: the numbers a nurse reads from across the room.
	b = b.WithPanel(bigStat("SpO2", "Current SpO2. Colour: the alarm limits (red high priority, yellow medium). NO DATA when no current value: sensor off, device silent, value stale.").
		GridPos(gridPos(0, 0, 5, 8)).
		WithTarget(instant("A", `vigil_spo2_ratio{`+deviceSelector+`} * 100`, "{{device}}")).
		Unit(unitPercent).Decimals(0).
		Thresholds(thresholds(colourSteps(spo2, 1))))
	b = b.WithPanel(bigStat("Pulse", "Current pulse rate from the oximeter, coloured by the alarm limits.").
		GridPos(gridPos(5, 0, 5, 8)).
		WithTarget(instant("A", `vigil_pulse_rate_bpm{`+deviceSelector+`}`, "{{device}}")).
		Unit(unitPerMin).Decimals(0).
		Thresholds(thresholds(colourSteps(pulse, 1))))
	b = b.WithPanel(bigStat("Blood pressure", "Last blood pressure (systolic, diastolic, mean), each coloured by its alarm limits. It stays shown until metrics.nibp_stale_after (20 min by default) after the measurement; see the BP age panel.").
		GridPos(gridPos(10, 0, 7, 8)).
		WithTarget(instant("A", `vigil_nibp_systolic_mmhg{`+deviceSelector+`}`, "SYS")).
		WithTarget(instant("B", `vigil_nibp_diastolic_mmhg{`+deviceSelector+`}`, "DIA")).
		WithTarget(instant("C", `vigil_nibp_mean_mmhg{`+deviceSelector+`}`, "MAP")).
		TextMode(common.BigValueTextModeValueAndName).
		Unit(unitMmHg).Decimals(0).
		Thresholds(thresholds(colourSteps(nil, 1))).
		OverrideByQuery("A", []dashboard.DynamicConfigValue{thresholdsValue(colourSteps(systolic, 1))}).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{thresholdsValue(colourSteps(diastolic, 1))}).
		OverrideByQuery("C", []dashboard.DynamicConfigValue{thresholdsValue(colourSteps(mean, 1))}))
	b = b.WithPanel(bigStat("Worst alarm in force", "The highest priority among the room's alarms in force, with its marker (*** high, ** medium, * low). The table below lists them.").
		GridPos(gridPos(17, 0, 7, 8)).
		WithTarget(instant("A", `max(`+priorityRank(roomSelector)+`) or 0 * max(vigil_mqtt_connected{`+roomSelector+`})`, "")).
		Mappings([]dashboard.ValueMapping{priorityMapping()}))

	// Row 2: can the numbers above be trusted, and where is the session.
	b = b.WithPanel(bigStat("SpO2 data age", "Seconds since the oximeter's last reading. Yellow from 10 s (the value leaves the scrape), red from 15 s (clinical.md 4: SpO2 stale). NEVER: no reading since the agent started.").
		GridPos(gridPos(0, 8, 4, 4)).
		WithTarget(instant("A", dataAge("spo2"), "{{device}}")).
		Unit(unitSeconds).Decimals(0).
		Thresholds(thresholds(fixedSteps(colourNormal, oximeterAgeWarn, colourMedium, oximeterAgeStale, colourHigh))).
		Mappings(ageMappings()))
	b = b.WithPanel(bigStat("BP age", "Time since the blood-pressure monitor's last reading (a measurement or its cuff pressure). Red from 20 min, when the value leaves the scrape.").
		GridPos(gridPos(4, 8, 4, 4)).
		WithTarget(instant("A", dataAge("nibp_systolic"), "{{device}}")).
		Unit(unitDuration).
		Thresholds(thresholds(fixedSteps(colourNormal, nibpAgeStale, colourHigh))).
		Mappings(ageMappings()))
	b = b.WithPanel(bigStat("Devices", "Each device: UP when connected and talking, DOWN when disconnected or silent.").
		GridPos(gridPos(8, 8, 4, 4)).
		WithTarget(instant("A", `vigil_device_up{`+deviceSelector+`}`, "{{device}}")).
		TextMode(common.BigValueTextModeValueAndName).
		Mappings([]dashboard.ValueMapping{valueText("1", "UP", colourNormal, "0", "DOWN", colourHigh)}))
	b = b.WithPanel(bigStat("MQTT", "The agent's connection to the MQTT broker (phones and central displays depend on it).").
		GridPos(gridPos(12, 8, 4, 4)).
		WithTarget(instant("A", `vigil_mqtt_connected{`+roomSelector+`}`, "")).
		Mappings([]dashboard.ValueMapping{valueText("1", "connected", colourNormal, "0", "DISCONNECTED", colourHigh)}))
	b = b.WithPanel(bigStat("Session", "Time since the dosing session started.").
		GridPos(gridPos(16, 8, 4, 4)).
		WithTarget(instant("A", `vigil_session_elapsed_seconds{`+roomSelector+`}`, "")).
		ColorMode(common.BigValueColorModeNone).
		Unit(unitDuration).
		Mappings([]dashboard.ValueMapping{valueText("0", "no session", colourNone)}))
	b = b.WithPanel(bigStat("Next blood pressure", "Time until the session's next scheduled blood pressure; red and negative when overdue.").
		GridPos(gridPos(20, 8, 4, 4)).
		WithTarget(instant("A", `vigil_next_nibp_due_seconds{`+roomSelector+`}`, "")).
		Unit(unitDuration).
		Thresholds(thresholds(fixedSteps(colourHigh, 0, colourNormal))).
		Mappings([]dashboard.ValueMapping{valueText("0", "not scheduled", colourNone)}))

	// Row 3: the alarms in force, worst first.
	b = b.WithPanel(tablePanel("Alarms in force", "Every alarm in force (active, acknowledged or latched), highest priority first. Acknowledge with vigil alarms ack, the HTTP API, MQTT or the phone link.").
		GridPos(gridPos(0, 12, 24, 7)).
		WithTarget(tableQuery("A", priorityRank(roomSelector))).
		NoValue("No alarm in force").
		WithTransformation(sortBy("Value")).
		WithTransformation(organize([]string{"Time", "site", "room", "priority", "__name__"},
			[2]string{"Value", "Priority"}, [2]string{"alarm", "Alarm"}, [2]string{"kind", "Kind"}, [2]string{"device", "Device"})).
		OverrideByName("Priority", []dashboard.DynamicConfigValue{mappingsValue(priorityMapping()), colouredCells()}))

	// Rows 4 and 5: trends with the limits drawn in.
	b = b.WithPanel(limitLines(trendPanel("SpO2 trend", "SpO2 with the alarm limits as dashed lines. Gaps are times without a current value.", unitPercent), spo2).
		GridPos(gridPos(0, 19, 12, 9)).
		WithTarget(trend("A", `vigil_spo2_ratio{`+deviceSelector+`} * 100`, "{{device}}")).
		AxisSoftMin(80).AxisSoftMax(100).Decimals(0))
	b = b.WithPanel(limitLines(trendPanel("Pulse trend", "Pulse rate from the oximeter and the blood-pressure monitor, with the alarm limits.", unitPerMin), pulse).
		GridPos(gridPos(12, 19, 12, 9)).
		WithTarget(trend("A", `vigil_pulse_rate_bpm{`+deviceSelector+`}`, "{{device}}")).
		WithTarget(trend("B", `vigil_nibp_pulse_rate_bpm{`+deviceSelector+`}`, "{{device}} (NIBP)")).
		AxisSoftMin(30).AxisSoftMax(150).Decimals(0))
	b = b.WithPanel(limitLines(trendPanel("Blood pressure trend", "Systolic, diastolic and mean pressure, with the systolic and diastolic limits. Each measurement stays drawn while its value is current.", unitMmHg), append(append([]limit{}, systolic...), diastolic...)).
		GridPos(gridPos(0, 28, 12, 9)).
		WithTarget(trend("A", `vigil_nibp_systolic_mmhg{`+deviceSelector+`}`, "SYS")).
		WithTarget(trend("B", `vigil_nibp_diastolic_mmhg{`+deviceSelector+`}`, "DIA")).
		WithTarget(trend("C", `vigil_nibp_mean_mmhg{`+deviceSelector+`}`, "MAP")).
		AxisSoftMin(40).AxisSoftMax(200).Decimals(0))
	b = b.WithPanel(timeline("Device status", "When each device was up (connected and talking) or down.").
		GridPos(gridPos(12, 28, 12, 9)).
		WithTarget(trend("A", `vigil_device_up{`+deviceSelector+`}`, "{{device}}")).
		Mappings([]dashboard.ValueMapping{valueText("1", "up", colourNormal, "0", "down", colourHigh)}))

	return build(b)
}
