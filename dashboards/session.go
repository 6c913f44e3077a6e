package dashboards

import (
	"strconv"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// reviewStep is the resolution of the "time below the limit" count: the
// shipped scrape interval for vitals (configs/prometheus: 5 s), so every
// scraped value is counted once.
const reviewStep = 5

// mildestLow is the least severe at-or-below limit (90 % for SpO2 with the
// default rules): time spent at or below it is the review's desaturation
// figure. ok is false when the rules set no such limit.
func mildestLow(limits []limit) (limit, bool) {
	var found limit
	ok := false
	for _, l := range limits {
		if l.below && (!ok || l.value > found.value) {
			found, ok = l, true
		}
	}
	return found, ok
}

func formatNumber(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func sessionDashboard(rules []alarm.Rule) (dashboard.Dashboard, error) {
	spo2 := limitsOf(rules, "spo2")
	pulse := limitsOf(rules, "pulse_rate")
	systolic := limitsOf(rules, "nibp_systolic")
	diastolic := limitsOf(rules, "nibp_diastolic")

	b := dashboard.NewDashboardBuilder("Vigil session review").
		Uid("vigil-session").
		Description("One dosing session's trends and alarms. Select the session's time range: drag across its band in the Sessions panel, or use the shaded session annotation.").
		Tags([]string{tag}).
		Editable().
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncTooltip).
		WithVariable(siteVariable()).
		WithVariable(roomVariable()).
		WithVariable(deviceVariable()).
		Link(otherDashboards()).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Dosing session").
			Datasource(datasource).
			Enable(true).
			IconColor("blue").
			Expr(`vigil_session_active{` + roomSelector + `} == 1`).
			TitleFormat("Dosing session").
			Step("15s"))

	// Row 1: the session in figures, over the selected range.
	b = b.WithPanel(bigStat("Session length", "The longest session time reached in the range.").
		GridPos(gridPos(0, 0, 4, 5)).
		WithTarget(instant("A", `max(max_over_time(vigil_session_elapsed_seconds{`+roomSelector+`}[$__range]))`, "")).
		ColorMode(common.BigValueColorModeNone).
		Unit(unitDuration).
		Mappings([]dashboard.ValueMapping{valueText("0", "no session", colourNone)}))
	b = b.WithPanel(bigStat("Lowest SpO2", "The lowest SpO2 in the range, coloured by the alarm limits.").
		GridPos(gridPos(4, 0, 4, 5)).
		WithTarget(instant("A", `min(min_over_time(vigil_spo2_ratio{`+deviceSelector+`}[$__range])) * 100`, "")).
		Unit(unitPercent).Decimals(0).
		Thresholds(thresholds(colourSteps(spo2, 1))))
	if low, ok := mildestLow(spo2); ok {
		// The ratio is SpO2 / 100; the count runs per device, the worst
		// device counts.
		expr := `max(sum_over_time((vigil_spo2_ratio{` + deviceSelector + `} <= bool ` + formatNumber(low.value/100) + `)[$__range:` + strconv.Itoa(reviewStep) + `s])) * ` + strconv.Itoa(reviewStep)
		b = b.WithPanel(bigStat("Time with SpO2 ≤ "+formatNumber(low.value)+" %", "How long SpO2 was at or below the "+low.priority.String()+"-priority limit in the range (counted every "+strconv.Itoa(reviewStep)+" s).").
			GridPos(gridPos(8, 0, 4, 5)).
			WithTarget(instant("A", expr, "")).
			Unit(unitDuration).
			Thresholds(thresholds(fixedSteps(colourNormal, reviewStep, priorityColour(low.priority)))))
	}
	b = b.WithPanel(bigStat("Pulse range", "The lowest and highest pulse rate in the range.").
		GridPos(gridPos(12, 0, 4, 5)).
		WithTarget(instant("A", `min(min_over_time(vigil_pulse_rate_bpm{`+deviceSelector+`}[$__range]))`, "min")).
		WithTarget(instant("B", `max(max_over_time(vigil_pulse_rate_bpm{`+deviceSelector+`}[$__range]))`, "max")).
		TextMode(common.BigValueTextModeValueAndName).
		Unit(unitPerMin).Decimals(0).
		Thresholds(thresholds(colourSteps(pulse, 1))))
	b = b.WithPanel(bigStat("Highest blood pressure", "The highest systolic and diastolic pressure in the range.").
		GridPos(gridPos(16, 0, 4, 5)).
		WithTarget(instant("A", `max(max_over_time(vigil_nibp_systolic_mmhg{`+deviceSelector+`}[$__range]))`, "SYS")).
		WithTarget(instant("B", `max(max_over_time(vigil_nibp_diastolic_mmhg{`+deviceSelector+`}[$__range]))`, "DIA")).
		TextMode(common.BigValueTextModeValueAndName).
		Unit(unitMmHg).Decimals(0).
		Thresholds(thresholds(colourSteps(nil, 1))).
		OverrideByQuery("A", []dashboard.DynamicConfigValue{thresholdsValue(colourSteps(systolic, 1))}).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{thresholdsValue(colourSteps(diastolic, 1))}))
	b = b.WithPanel(bigStat("Alarms", "How many different alarms were in force in the range (the table below lists them).").
		GridPos(gridPos(20, 0, 4, 5)).
		WithTarget(instant("A", `count(max_over_time(vigil_alarm_active{`+roomSelector+`}[$__range]))`+
			` or 0 * max(max_over_time(vigil_mqtt_connected{`+roomSelector+`}[$__range]))`, "")).
		ColorMode(common.BigValueColorModeNone))

	// Row 2: where the sessions are.
	b = b.WithPanel(timeline("Sessions", "Dosing sessions in the range: drag across one to review it.").
		GridPos(gridPos(0, 5, 24, 3)).
		WithTarget(trend("A", `vigil_session_active{`+roomSelector+`}`, "session")).
		Mappings([]dashboard.ValueMapping{valueText("1", "session", "blue", "0", "no session", "transparent")}))

	// Rows 3 and 4: the trends with the limits.
	b = b.WithPanel(limitLines(trendPanel("SpO2", "SpO2 with the alarm limits.", unitPercent), spo2).
		GridPos(gridPos(0, 8, 12, 9)).
		WithTarget(trend("A", `vigil_spo2_ratio{`+deviceSelector+`} * 100`, "{{device}}")).
		AxisSoftMin(80).AxisSoftMax(100).Decimals(0))
	b = b.WithPanel(limitLines(trendPanel("Pulse", "Pulse rate from the oximeter and the blood-pressure monitor, with the alarm limits.", unitPerMin), pulse).
		GridPos(gridPos(12, 8, 12, 9)).
		WithTarget(trend("A", `vigil_pulse_rate_bpm{`+deviceSelector+`}`, "{{device}}")).
		WithTarget(trend("B", `vigil_nibp_pulse_rate_bpm{`+deviceSelector+`}`, "{{device}} (NIBP)")).
		AxisSoftMin(30).AxisSoftMax(150).Decimals(0))
	b = b.WithPanel(limitLines(trendPanel("Blood pressure", "Systolic, diastolic and mean pressure with the systolic and diastolic limits.", unitMmHg), append(append([]limit{}, systolic...), diastolic...)).
		GridPos(gridPos(0, 17, 12, 9)).
		WithTarget(trend("A", `vigil_nibp_systolic_mmhg{`+deviceSelector+`}`, "SYS")).
		WithTarget(trend("B", `vigil_nibp_diastolic_mmhg{`+deviceSelector+`}`, "DIA")).
		WithTarget(trend("C", `vigil_nibp_mean_mmhg{`+deviceSelector+`}`, "MAP")).
		ShowPoints(common.VisibilityModeAlways).
		AxisSoftMin(40).AxisSoftMax(200).Decimals(0))
	b = b.WithPanel(trendPanel("Perfusion index", "Perfusion index: a falling value makes SpO2 less reliable.", unitPercent).
		GridPos(gridPos(12, 17, 12, 9)).
		WithTarget(trend("A", `vigil_perfusion_index_ratio{`+deviceSelector+`} * 100`, "{{device}}")).
		AxisSoftMin(0).Decimals(1))

	// Row 5: the alarms of the session.
	b = b.WithPanel(timeline("Alarm timeline", "When each alarm was in force, by priority.").
		GridPos(gridPos(0, 26, 12, 9)).
		WithTarget(trend("A", priorityRank(roomSelector), "{{alarm}}")).
		Mappings([]dashboard.ValueMapping{priorityMapping()}))
	rangeRank := `3 * max_over_time(vigil_alarm_active{` + roomSelector + `, priority="high"}[$__range])` +
		` or 2 * max_over_time(vigil_alarm_active{` + roomSelector + `, priority="medium"}[$__range])` +
		` or 1 * max_over_time(vigil_alarm_active{` + roomSelector + `, priority="low"}[$__range])`
	b = b.WithPanel(tablePanel("Alarms in the range", "Every alarm in force at some time in the range, highest priority first. The audit log has each one's transitions and acknowledgements.").
		GridPos(gridPos(12, 26, 12, 9)).
		WithTarget(tableQuery("A", rangeRank)).
		NoValue("No alarm in the range").
		WithTransformation(sortBy("Value")).
		WithTransformation(organize([]string{"Time", "site", "room", "priority", "__name__"},
			[2]string{"Value", "Priority"}, [2]string{"alarm", "Alarm"}, [2]string{"kind", "Kind"}, [2]string{"device", "Device"})).
		OverrideByName("Priority", []dashboard.DynamicConfigValue{mappingsValue(priorityMapping()), colouredCells()}))

	return build(b)
}
