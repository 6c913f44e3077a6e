package report

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Code systems of the FHIR export.
const (
	// SystemMDC is ISO/IEEE 11073-10101 as FHIR names it; codes are the
	// numeric MDC codes (protocols.md 5.3).
	SystemMDC = "urn:iso:std:iso:11073:10101"
	// SystemLOINC is LOINC.
	SystemLOINC = "http://loinc.org"
	// SystemUCUM is UCUM, for every valueQuantity.
	SystemUCUM = "http://unitsofmeasure.org"
	// SystemObservationCategory holds "vital-signs".
	SystemObservationCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	// SystemDataAbsentReason explains a blood-pressure component without a value.
	SystemDataAbsentReason = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
	// SystemSessionID and SystemReadingID are Vigil's own identifier
	// namespaces: the Bundle's identifier is the session id, each
	// Observation's identifiers are "device/seq" of the readings it holds,
	// so a repeated import can be deduplicated.
	SystemSessionID = "urn:vigil:session"
	SystemReadingID = "urn:vigil:reading"
)

// loincCode is a LOINC equivalent of a metric. Codes from protocols.md 5.3
// (dk-core's ValueSet); the blood-pressure panel code from the FHIR R4
// vital-signs value set (hl7.org/fhir/R4/valueset-observation-vitalsignresult.html),
// which groups systolic 8480-6 and diastolic 8462-4 as components of 85354-9.
type loincCode struct{ code, display string }

var loincByMetric = map[drivers.MetricID]loincCode{
	drivers.SpO2:            {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"},
	drivers.PulseRate:       {"8867-4", "Heart rate"},
	drivers.NIBPPulseRate:   {"8867-4", "Heart rate"},
	drivers.NIBPSystolic:    {"8480-6", "Systolic blood pressure"},
	drivers.NIBPDiastolic:   {"8462-4", "Diastolic blood pressure"},
	drivers.NIBPMean:        {"8478-0", "Mean blood pressure"},
	drivers.RespirationRate: {"9279-1", "Respiratory rate"},
	// Perfusion index: protocols.md 5.3 gives no LOINC code; MDC only.
}

// The blood-pressure measurement as one Observation: MDC_PRESS_BLD_NONINV
// (compound, protocols.md 5.3) and the LOINC panel.
const (
	mdcNIBPCompound       = "150020"
	mdcNIBPCompoundRefID  = "MDC_PRESS_BLD_NONINV"
	loincBPPanel          = "85354-9"
	loincBPPanelDisplay   = "Blood pressure panel with all children optional"
	nibpMeasurementWindow = 5 * time.Second
)

// The FHIR R4 JSON shapes written (a subset of Bundle and Observation).
type (
	fhirCoding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	fhirCodeableConcept struct {
		Coding []fhirCoding `json:"coding"`
		Text   string       `json:"text,omitempty"`
	}
	fhirQuantity struct {
		Value  float64 `json:"value"`
		Unit   string  `json:"unit"`
		System string  `json:"system"`
		Code   string  `json:"code"`
	}
	fhirIdentifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	fhirReference struct {
		Display string `json:"display"`
	}
	fhirAnnotation struct {
		Text string `json:"text"`
	}
	fhirComponent struct {
		Code             fhirCodeableConcept  `json:"code"`
		ValueQuantity    *fhirQuantity        `json:"valueQuantity,omitempty"`
		DataAbsentReason *fhirCodeableConcept `json:"dataAbsentReason,omitempty"`
	}
	fhirObservation struct {
		ResourceType      string                `json:"resourceType"`
		Identifier        []fhirIdentifier      `json:"identifier,omitempty"`
		Status            string                `json:"status"`
		Category          []fhirCodeableConcept `json:"category"`
		Code              fhirCodeableConcept   `json:"code"`
		EffectiveDateTime string                `json:"effectiveDateTime"`
		ValueQuantity     *fhirQuantity         `json:"valueQuantity,omitempty"`
		Note              []fhirAnnotation      `json:"note,omitempty"`
		Device            *fhirReference        `json:"device,omitempty"`
		Component         []fhirComponent       `json:"component,omitempty"`
	}
	fhirEntry struct {
		FullURL  string          `json:"fullUrl"`
		Resource fhirObservation `json:"resource"`
	}
	fhirBundleHead struct {
		ResourceType string         `json:"resourceType"`
		Identifier   fhirIdentifier `json:"identifier"`
		Type         string         `json:"type"`
	}
)

var vitalSigns = []fhirCodeableConcept{{
	Coding: []fhirCoding{{System: SystemObservationCategory, Code: "vital-signs", Display: "Vital Signs"}},
}}

// WriteFHIR writes a FHIR R4 Bundle of type "collection" holding one
// Observation per valid reading, except the NIBP systolic, diastolic and
// mean of one measurement, which become one blood-pressure Observation with
// three components (README.md, "FHIR"). Every Observation is status
// "final", category vital-signs, coded with MDC and (where protocols.md 5.3
// gives one) LOINC, valued in UCUM, timed by the agent's clock.
//
// Invalid readings are left out rather than sent as "entered-in-error":
// that status withdraws a result that was once reported, while an invalid
// reading (sensor off, cuff error) never measured anything. The gaps stay
// in the CSV and JSON exports.
//
// There is no Patient resource and no subject: Vigil never knows who the
// patient is (privacy rule). The clinic attaches the bundle to the chart by
// its identifier, the session id, which its own record links to the
// patient.
func WriteFHIR(w io.Writer, s Session) error {
	if err := validate(&s); err != nil {
		return err
	}
	sel := selectReadings(s.Readings)
	bw := bufio.NewWriterSize(w, 64<<10)
	head, err := json.Marshal(fhirBundleHead{
		ResourceType: "Bundle",
		Identifier:   fhirIdentifier{System: SystemSessionID, Value: s.ID},
		Type:         "collection",
	})
	if err != nil {
		return err
	}
	if _, err := bw.Write(head[:len(head)-1]); err != nil { // reopen the object to append the entries
		return err
	}

	first := true
	for _, it := range observationItems(sel.readings) {
		var obs fhirObservation
		var ok bool
		if it.bp != nil {
			obs, ok = bpObservation(sel.readings, it.bp)
		} else {
			obs, ok = readingObservation(&sel.readings[it.reading])
		}
		if !ok {
			continue
		}
		entry, err := json.Marshal(fhirEntry{FullURL: fullURL(s.ID, obs.Identifier), Resource: obs})
		if err != nil {
			return err
		}
		// FHIR JSON allows no empty array: "entry" opens with the first.
		sep := ",\n"
		if first {
			sep = `,"entry":[` + "\n"
			first = false
		}
		bw.WriteString(sep)
		if _, err := bw.Write(entry); err != nil {
			return err
		}
	}
	if !first {
		bw.WriteString("\n]")
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// bpGroup is one NIBP measurement: indexes of its readings by metric.
type bpGroup struct {
	device  string
	start   time.Time
	members map[drivers.MetricID]int
}

// observationItem is either one reading or one NIBP measurement.
type observationItem struct {
	reading int
	bp      *bpGroup
}

func isBPComponent(id drivers.MetricID) bool {
	return id == drivers.NIBPSystolic || id == drivers.NIBPDiastolic || id == drivers.NIBPMean
}

// observationItems groups the NIBP systolic, diastolic and mean readings of
// one measurement: the same device, within nibpMeasurementWindow of the
// first (a driver stamps all values of one result with the same receive
// time), each metric once. Other readings stay single, in time order.
func observationItems(readings []drivers.Reading) []observationItem {
	items := make([]observationItem, 0, len(readings))
	open := map[string]*bpGroup{}
	for i := range readings {
		r := &readings[i]
		if !isBPComponent(r.Metric) {
			items = append(items, observationItem{reading: i})
			continue
		}
		g := open[r.Device]
		if _, dup := g.memberIndex(r.Metric); g == nil || dup || r.Received.Sub(g.start) > nibpMeasurementWindow {
			g = &bpGroup{device: r.Device, start: r.Received, members: map[drivers.MetricID]int{}}
			open[r.Device] = g
			items = append(items, observationItem{bp: g})
		}
		g.members[r.Metric] = i
	}
	return items
}

func (g *bpGroup) memberIndex(id drivers.MetricID) (int, bool) {
	if g == nil {
		return 0, false
	}
	i, ok := g.members[id]
	return i, ok
}

func quantity(id drivers.MetricID, v float64) *fhirQuantity {
	u := id.Info().Unit
	return &fhirQuantity{Value: v, Unit: u, System: SystemUCUM, Code: u}
}

// metricConcept codes a metric with MDC and, when there is one, LOINC.
func metricConcept(id drivers.MetricID) fhirCodeableConcept {
	info := id.Info()
	c := fhirCodeableConcept{
		Coding: []fhirCoding{{System: SystemMDC, Code: strconv.FormatUint(uint64(info.MDCCode), 10), Display: info.MDC}},
		Text:   metricLabel(id),
	}
	if l, ok := loincByMetric[id]; ok {
		c.Coding = append(c.Coding, fhirCoding{System: SystemLOINC, Code: l.code, Display: l.display})
	}
	return c
}

func readingID(r *drivers.Reading) fhirIdentifier {
	return fhirIdentifier{System: SystemReadingID, Value: r.Device + "/" + strconv.FormatUint(r.Seq, 10)}
}

func flagNote(f drivers.Flags) []fhirAnnotation {
	if f == 0 {
		return nil
	}
	return []fhirAnnotation{{Text: "device flags: " + strings.Join(f.Names(), ", ")}}
}

func deviceRef(device string) *fhirReference {
	if device == "" {
		return nil
	}
	return &fhirReference{Display: device}
}

func readingObservation(r *drivers.Reading) (fhirObservation, bool) {
	// A reading without an agent time cannot be placed in the chart, and
	// FHIR allows no empty effectiveDateTime.
	if !usable(r) || r.Received.IsZero() {
		return fhirObservation{}, false
	}
	return fhirObservation{
		ResourceType:      "Observation",
		Identifier:        []fhirIdentifier{readingID(r)},
		Status:            "final",
		Category:          vitalSigns,
		Code:              metricConcept(r.Metric),
		EffectiveDateTime: formatTime(r.Received),
		ValueQuantity:     quantity(r.Metric, r.Value),
		Note:              flagNote(r.Flags),
		Device:            deviceRef(r.Device),
	}, true
}

// bpObservation builds the blood-pressure Observation of one measurement,
// or reports false when none of its values is valid. Systolic and
// diastolic are always present as components (the FHIR vital-signs shape),
// with a data-absent reason when invalid ("error") or not reported
// ("unknown"); mean appears only with a value.
func bpObservation(readings []drivers.Reading, g *bpGroup) (fhirObservation, bool) {
	obs := fhirObservation{
		ResourceType: "Observation",
		Status:       "final",
		Category:     vitalSigns,
		Code: fhirCodeableConcept{
			Coding: []fhirCoding{
				{System: SystemMDC, Code: mdcNIBPCompound, Display: mdcNIBPCompoundRefID},
				{System: SystemLOINC, Code: loincBPPanel, Display: loincBPPanelDisplay},
			},
			Text: "Non-invasive blood pressure",
		},
		EffectiveDateTime: formatTime(g.start),
		Device:            deviceRef(g.device),
	}
	var flags drivers.Flags
	anyValue := false
	for _, id := range []drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean} {
		comp := fhirComponent{Code: metricConcept(id)}
		i, present := g.members[id]
		switch {
		case present && usable(&readings[i]):
			comp.ValueQuantity = quantity(id, readings[i].Value)
			anyValue = true
		case id == drivers.NIBPMean:
			comp = fhirComponent{}
		case present:
			comp.DataAbsentReason = absentReason("error", "Error")
		default:
			comp.DataAbsentReason = absentReason("unknown", "Unknown")
		}
		if present {
			obs.Identifier = append(obs.Identifier, readingID(&readings[i]))
			flags |= readings[i].Flags
		}
		if comp.ValueQuantity != nil || comp.DataAbsentReason != nil {
			obs.Component = append(obs.Component, comp)
		}
	}
	if !anyValue || g.start.IsZero() {
		return fhirObservation{}, false
	}
	obs.Note = flagNote(flags)
	return obs, true
}

func absentReason(code, display string) *fhirCodeableConcept {
	return &fhirCodeableConcept{Coding: []fhirCoding{{System: SystemDataAbsentReason, Code: code, Display: display}}}
}

// fullURLNamespace seeds the entries' name-based UUIDs (RFC 9562 version 5
// layout), so the same session always exports the same fullUrls.
var fullURLNamespace = [16]byte{0x6f, 0x1d, 0x2e, 0x94, 0x53, 0x0b, 0x4c, 0x7e, 0x9a, 0x41, 0x2c, 0x85, 0xd3, 0x60, 0x17, 0xb2}

func fullURL(sessionID string, ids []fhirIdentifier) string {
	h := sha1.New()
	h.Write(fullURLNamespace[:])
	h.Write([]byte(sessionID))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id.Value))
	}
	var sum [sha1.Size]byte
	u := h.Sum(sum[:0])[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], u[10:16])
	return "urn:uuid:" + string(buf[:])
}

// metricLabel is a metric's name for people.
func metricLabel(id drivers.MetricID) string {
	switch id {
	case drivers.SpO2:
		return "SpO2"
	case drivers.PulseRate:
		return "Pulse rate (oximeter)"
	case drivers.PerfusionIndex:
		return "Perfusion index"
	case drivers.NIBPSystolic:
		return "NIBP systolic"
	case drivers.NIBPDiastolic:
		return "NIBP diastolic"
	case drivers.NIBPMean:
		return "NIBP mean"
	case drivers.NIBPPulseRate:
		return "Pulse rate (NIBP)"
	case drivers.RespirationRate:
		return "Respiration rate"
	}
	return id.String()
}

// sortedMetricIDs lists metric ids in catalogue order.
func sortedMetricIDs(m map[drivers.MetricID]bool) []drivers.MetricID {
	out := make([]drivers.MetricID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
