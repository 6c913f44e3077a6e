package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Label selectors shared by the queries. site and room are single values;
// device is a multi-value variable, which Grafana expands to a regular
// expression "(a|b)" for Prometheus, hence =~.
const (
	roomSelector   = `site="$site", room="$room"`
	deviceSelector = `site="$site", room="$room", device=~"$device"`
)

// Units Grafana knows, and the catalogue units it does not (suffix units).
const (
	unitPercent  = "percent"
	unitPerMin   = "suffix:/min"
	unitMmHg     = "suffix: mmHg"
	unitSeconds  = "s"
	unitDuration = "dtdurations"
)

// noData is what a stat shows when its series is absent: a value that went
// stale, a device that stopped, an agent that is not scraped. It never shows
// the last value it had.
const noData = "NO DATA"

var datasource = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr(DatasourceUID)}

// instant is a query Grafana runs at the end of the time range only: a
// stat built on it shows nothing once the series has left the scrape,
// where a range query reduced to "last" would show the last value seen.
func instant(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().RefId(ref).Expr(expr).Instant().Datasource(datasource)
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// tableQuery is an instant query shown as a table: one row per series, one
// column per label.
func tableQuery(ref, expr string) *prometheus.DataqueryBuilder {
	return instant(ref, expr, "").Format(prometheus.PromQueryFormatTable)
}

// trend is a range query for a time series.
func trend(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().RefId(ref).Expr(expr).Range().Datasource(datasource)
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

func thresholds(steps []dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

// fixedSteps is a base colour then (value, colour) pairs.
func fixedSteps(base string, more ...any) []dashboard.Threshold {
	steps := []dashboard.Threshold{{Color: base}}
	for i := 0; i+1 < len(more); i += 2 {
		steps = append(steps, dashboard.Threshold{Value: ptr(toFloat(more[i])), Color: more[i+1].(string)})
	}
	return steps
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case float64:
		return n
	}
	panic("dashboards: threshold value must be int or float64")
}

// valueText maps exact values to a text and colour: value, text, colour,
// value, text, colour, ...
func valueText(triples ...string) dashboard.ValueMapping {
	m := dashboard.NewValueMap()
	for i := 0; i+2 < len(triples); i += 3 {
		m.Options[triples[i]] = dashboard.ValueMappingResult{Text: ptr(triples[i+1]), Color: ptr(triples[i+2]), Index: ptr(int32(i / 3))}
	}
	return dashboard.ValueMapping{ValueMap: m}
}

// rangeText maps values in [from, to] (nil: unbounded) to a text and colour.
func rangeText(from, to *float64, text, colour string, index int32) dashboard.ValueMapping {
	return dashboard.ValueMapping{RangeMap: &dashboard.RangeMap{
		Type: dashboard.MappingTypeRangeToText,
		Options: dashboard.DashboardRangeMapOptions{
			From: from, To: to,
			Result: dashboard.ValueMappingResult{Text: ptr(text), Color: ptr(colour), Index: ptr(index)},
		},
	}}
}

// priorityRank turns the priority label into a number (3 high, 2 medium,
// 1 low) so alarms can be sorted and the worst one found in PromQL.
func priorityRank(selector string) string {
	return `3 * vigil_alarm_active{` + selector + `, priority="high"}` +
		` or 2 * vigil_alarm_active{` + selector + `, priority="medium"}` +
		` or 1 * vigil_alarm_active{` + selector + `, priority="low"}`
}

// priorityMapping shows a rank as the priority's text marker and colour
// (clinical.md 1: priority must be told apart without colour).
func priorityMapping() dashboard.ValueMapping {
	return valueText(
		"3", "*** HIGH", colourHigh,
		"2", "** MEDIUM", colourMedium,
		"1", "* LOW", colourLow,
		"0", "none", colourNormal,
	)
}

func bigStat(title, description string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeAuto).
		JustifyMode(common.BigValueJustifyModeCenter).
		Orientation(common.VizOrientationAuto).
		NoValue(noData)
}

func trendPanel(title, description, unit string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Unit(unit).
		LineWidth(2).
		// A gap stays a gap: readings that were never taken are not drawn
		// as a line between the values around them.
		SpanNulls(common.BoolOrFloat64{Bool: ptr(false)}).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom).ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderNone))
}

// limitLines draws the limits as dashed lines on a trend.
func limitLines(p *timeseries.PanelBuilder, limits []limit) *timeseries.PanelBuilder {
	return p.Thresholds(thresholds(lineSteps(limits))).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
}

func timeline(title, description string) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		FillOpacity(80).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom).ShowLegend(false))
}

func tablePanel(title, description string) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		CellHeight(common.TableCellHeightSm).
		// The SDK's default footer has a null reducer, which its own
		// strict decoder (and Grafana's schema) refuses.
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{}).CountRows(false)).
		NoValue(noData)
}

// colouredCells paints a table column's cells with its mapping or
// threshold colour.
func colouredCells() dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background", "mode": "basic"}}
}

func mappingsValue(m ...dashboard.ValueMapping) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "mappings", Value: m}
}

func thresholdsValue(steps []dashboard.Threshold) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "thresholds", Value: dashboard.ThresholdsConfig{Mode: dashboard.ThresholdsModeAbsolute, Steps: steps}}
}

func unitValue(unit string) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "unit", Value: unit}
}

func decimalsValue(n int) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "decimals", Value: n}
}

// organize hides, orders and renames table columns: index lists the
// columns to keep, in order, each as "label=Title".
func organize(hide []string, keep ...[2]string) dashboard.DataTransformerConfig {
	exclude := map[string]any{}
	for _, h := range hide {
		exclude[h] = true
	}
	index := map[string]any{}
	rename := map[string]any{}
	for i, k := range keep {
		index[k[0]] = i
		if k[1] != "" {
			rename[k[0]] = k[1]
		}
	}
	return dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
		"excludeByName": exclude, "indexByName": index, "renameByName": rename,
	}}
}

// sortBy sorts table rows by a column, highest first.
func sortBy(field string) dashboard.DataTransformerConfig {
	return dashboard.DataTransformerConfig{Id: "sortBy", Options: map[string]any{
		"fields": map[string]any{}, "sort": []any{map[string]any{"field": field, "desc": true}},
	}}
}

// merge joins instant table queries on their common label columns (site,
// room), one row per room.
func merge() dashboard.DataTransformerConfig {
	return dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}
}

func gridPos(x, y, w, h uint32) dashboard.GridPos { return dashboard.GridPos{X: x, Y: y, W: w, H: h} }

// labelVariable is a template variable filled from a label's values.
func labelVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortNaturalAsc).
		AllowCustomValue(false)
}

func siteVariable() *dashboard.QueryVariableBuilder {
	return labelVariable("site", "Site", `label_values(vigil_device_up, site)`)
}

func roomVariable() *dashboard.QueryVariableBuilder {
	return labelVariable("room", "Room", `label_values(vigil_device_up{site="$site"}, room)`)
}

// deviceVariable selects devices of the room; all of them by default.
func deviceVariable() *dashboard.QueryVariableBuilder {
	return labelVariable("device", "Device", `label_values(vigil_device_up{site="$site", room="$room"}, device)`).
		Multi(true).
		IncludeAll(true).
		Current(dashboard.VariableOption{
			Selected: ptr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// otherDashboards links the Vigil dashboards to each other, keeping the
// time range and the variables.
func otherDashboards() *dashboard.DashboardLinkBuilder {
	return dashboard.NewDashboardLinkBuilder("Vigil").
		Type(dashboard.DashboardLinkTypeDashboards).
		Tags([]string{tag}).
		AsDropdown(true).
		IncludeVars(true).
		KeepTime(true)
}

// build builds the dashboard and numbers its panels in order: Grafana
// needs a unique id per panel.
func build(b *dashboard.DashboardBuilder) (dashboard.Dashboard, error) {
	d, err := b.Build()
	if err != nil {
		return d, err
	}
	var id uint32
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			id++
			p.Panel.Id = ptr(id)
		case p.RowPanel != nil:
			id++
			p.RowPanel.Id = id
			for i := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[i].Id = ptr(id)
			}
		}
	}
	return d, nil
}
