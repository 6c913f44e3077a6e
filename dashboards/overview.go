package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// siteRooms selects the rooms of the overview: one site, any of its rooms.
const siteRooms = `site="$site", room=~"$room"`

// agentDownRank sorts a room whose agent Prometheus cannot scrape above
// every alarm: nothing in that room is monitored (clinical.md 1: loss of
// monitoring is itself an alarm condition).
const agentDownRank = "4"

// overviewRoomVariable selects any of the site's rooms, all by default.
func overviewRoomVariable() *dashboard.QueryVariableBuilder {
	return roomVariable().
		Multi(true).
		IncludeAll(true).
		Current(dashboard.VariableOption{
			Selected: ptr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// roomPriorityMapping is priorityMapping with the agent-down rank.
func roomPriorityMapping() dashboard.ValueMapping {
	m := priorityMapping()
	m.ValueMap.Options[agentDownRank] = dashboard.ValueMappingResult{Text: ptr("AGENT DOWN"), Color: ptr(colourHigh), Index: ptr(int32(len(m.ValueMap.Options)))}
	return m
}

func overviewDashboard(rules []alarm.Rule) (dashboard.Dashboard, error) {
	spo2 := limitsOf(rules, "spo2")
	pulse := limitsOf(rules, "pulse_rate")
	systolic := limitsOf(rules, "nibp_systolic")
	diastolic := limitsOf(rules, "nibp_diastolic")

	// Every query is one row per room (by site, room) so the merge
	// transformation joins them into one table. A room whose agent is
	// down keeps its row through up{job="vigil"}, which Prometheus writes
	// with the target's site and room labels (configs/prometheus).
	perRoom := func(aggregation, expr string) string {
		return aggregation + ` by (site, room) (` + expr + `)`
	}
	upQuery := `up{job="vigil", ` + siteRooms + `}`
	zeroWhileUp := `0 * ` + perRoom("max", `vigil_mqtt_connected{`+siteRooms+`}`)
	worst := perRoom("max", priorityRank(siteRooms)) +
		` or ` + perRoom("max", agentDownRank+` * (`+upQuery+` == bool 0)`)

	rooms := tablePanel("Rooms", "One row per room, the worst alarm in force first; a room whose agent is not scraped comes first of all. Click a room to open it.").
		GridPos(gridPos(0, 0, 24, 16)).
		WithTarget(tableQuery("A", worst)).
		WithTarget(tableQuery("B", perRoom("count", `vigil_alarm_active{`+siteRooms+`}`)+` or `+zeroWhileUp)).
		WithTarget(tableQuery("C", perRoom("min", `vigil_spo2_ratio{`+siteRooms+`}`)+` * 100`)).
		WithTarget(tableQuery("D", perRoom("max", `vigil_pulse_rate_bpm{`+siteRooms+`}`))).
		WithTarget(tableQuery("E", perRoom("max", `vigil_nibp_systolic_mmhg{`+siteRooms+`}`))).
		WithTarget(tableQuery("F", perRoom("max", `vigil_nibp_diastolic_mmhg{`+siteRooms+`}`))).
		WithTarget(tableQuery("G", perRoom("max", `time() - (vigil_last_reading_timestamp_seconds{`+siteRooms+`} and on (site, room, device) vigil_readings_total{`+siteRooms+`, metric="spo2"})`))).
		WithTarget(tableQuery("H", perRoom("count", `vigil_device_up{`+siteRooms+`} == 0`)+` or `+zeroWhileUp)).
		WithTarget(tableQuery("I", perRoom("max", `vigil_session_elapsed_seconds{`+siteRooms+`}`))).
		WithTarget(tableQuery("J", perRoom("max", `vigil_mqtt_connected{`+siteRooms+`}`))).
		WithTarget(tableQuery("K", perRoom("max", upQuery))).
		WithTransformation(merge()).
		WithTransformation(sortBy("Value #A")).
		WithTransformation(organize([]string{"Time", "site"},
			[2]string{"room", "Room"},
			[2]string{"Value #A", "Worst alarm"},
			[2]string{"Value #B", "Alarms"},
			[2]string{"Value #C", "SpO2"},
			[2]string{"Value #D", "Pulse"},
			[2]string{"Value #E", "Systolic"},
			[2]string{"Value #F", "Diastolic"},
			[2]string{"Value #G", "SpO2 data age"},
			[2]string{"Value #H", "Devices down"},
			[2]string{"Value #I", "Session"},
			[2]string{"Value #J", "MQTT"},
			[2]string{"Value #K", "Agent"})).
		NoValue("").
		OverrideByName("Room", []dashboard.DynamicConfigValue{{Id: "links", Value: []map[string]any{{
			"title": "Open the room",
			"url":   "/d/vigil-room/vigil-room?var-site=${site}&var-room=${__value.raw}&${__url_time_range}",
		}}}}).
		OverrideByName("Worst alarm", []dashboard.DynamicConfigValue{
			mappingsValue(roomPriorityMapping()),
			colouredCells(),
		}).
		OverrideByName("SpO2", []dashboard.DynamicConfigValue{unitValue(unitPercent), decimalsValue(0), thresholdsValue(colourSteps(spo2, 1)), colouredCells()}).
		OverrideByName("Pulse", []dashboard.DynamicConfigValue{unitValue(unitPerMin), decimalsValue(0), thresholdsValue(colourSteps(pulse, 1)), colouredCells()}).
		OverrideByName("Systolic", []dashboard.DynamicConfigValue{unitValue(unitMmHg), decimalsValue(0), thresholdsValue(colourSteps(systolic, 1)), colouredCells()}).
		OverrideByName("Diastolic", []dashboard.DynamicConfigValue{unitValue(unitMmHg), decimalsValue(0), thresholdsValue(colourSteps(diastolic, 1)), colouredCells()}).
		OverrideByName("SpO2 data age", []dashboard.DynamicConfigValue{
			unitValue(unitSeconds), decimalsValue(0),
			thresholdsValue(fixedSteps(colourNormal, oximeterAgeWarn, colourMedium, oximeterAgeStale, colourHigh)),
			mappingsValue(ageMappings()...), colouredCells(),
		}).
		OverrideByName("Devices down", []dashboard.DynamicConfigValue{thresholdsValue(fixedSteps(colourNormal, 1, colourHigh)), colouredCells()}).
		OverrideByName("Session", []dashboard.DynamicConfigValue{unitValue(unitDuration), mappingsValue(valueText("0", "none", colourNone))}).
		OverrideByName("MQTT", []dashboard.DynamicConfigValue{mappingsValue(valueText("1", "connected", colourNormal, "0", "DISCONNECTED", colourHigh)), colouredCells()}).
		OverrideByName("Agent", []dashboard.DynamicConfigValue{mappingsValue(valueText("1", "up", colourNormal, "0", "DOWN", colourHigh)), colouredCells()})

	b := dashboard.NewDashboardBuilder("Vigil clinic overview").
		Uid("vigil-overview").
		Description("Every treatment room of a site on one screen, the worst alarm first.").
		Tags([]string{tag}).
		Editable().
		Refresh("5s").
		Time("now-15m", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(siteVariable()).
		WithVariable(overviewRoomVariable()).
		Link(otherDashboards()).
		WithPanel(rooms).
		WithPanel(timeline("Alarms in force by room", "The worst alarm priority in force in each room over time.").
			GridPos(gridPos(0, 16, 24, 8)).
			WithTarget(trend("A", worst, "{{room}}")).
			Mappings([]dashboard.ValueMapping{roomPriorityMapping()}))
	return build(b)
}
