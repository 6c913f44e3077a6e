package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A waveform chunk's samples are stored as one BLOB: a format byte, then the
// samples little-endian in the narrowest form that holds every one of them
// exactly. Pleth samples are integers in the device's units (0..65535,
// drivers/metric.go), so a 75-sample chunk takes 151 bytes instead of 600.
const (
	samplesUint16  byte = 1 // every sample an integer in 0..65535
	samplesFloat32 byte = 2 // every sample exactly representable as float32
	samplesFloat64 byte = 3 // anything else, NaN and infinities included
)

var errBadSamples = errors.New("malformed samples blob")

func appendSamples(dst []byte, samples []float64) []byte {
	format := samplesUint16
	for _, v := range samples {
		// -0 is not stored as 0: the round trip is exact.
		if format == samplesUint16 && !(v >= 0 && v <= math.MaxUint16 && v == math.Trunc(v) && !math.Signbit(v)) {
			format = samplesFloat32
		}
		// A NaN never equals itself: it goes to float64 with its bits kept.
		if format == samplesFloat32 && float64(float32(v)) != v {
			format = samplesFloat64
			break
		}
	}
	dst = append(dst, format)
	for _, v := range samples {
		switch format {
		case samplesUint16:
			dst = binary.LittleEndian.AppendUint16(dst, uint16(v))
		case samplesFloat32:
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v)))
		default:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		}
	}
	return dst
}

// decodeSamples reads a blob appendSamples wrote, checking it holds count
// samples.
func decodeSamples(b []byte, count int) ([]float64, error) {
	if len(b) == 0 {
		return nil, errBadSamples
	}
	width := 0
	switch b[0] {
	case samplesUint16:
		width = 2
	case samplesFloat32:
		width = 4
	case samplesFloat64:
		width = 8
	default:
		return nil, fmt.Errorf("%w: format %d", errBadSamples, b[0])
	}
	body := b[1:]
	if len(body)%width != 0 || len(body)/width != count {
		return nil, fmt.Errorf("%w: %d bytes for %d samples of %d bytes", errBadSamples, len(body), count, width)
	}
	out := make([]float64, count)
	for i := range out {
		p := body[i*width:]
		switch width {
		case 2:
			out[i] = float64(binary.LittleEndian.Uint16(p))
		case 4:
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(p)))
		default:
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(p))
		}
	}
	return out, nil
}
