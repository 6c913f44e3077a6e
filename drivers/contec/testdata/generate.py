# Builds the synthetic captures of drivers/contec/testdata and computes
# their golden readings with a model of README.md's rules written apart
# from the Go decoder. Run: python3 testdata/generate.py
import json
import os
OUT = os.path.dirname(os.path.abspath(__file__))
def h(s): return bytes.fromhex(s.replace(' ', '').replace('\n', ''))

V46_LEN = {0x01:9,0x02:9,0x03:9,0x04:9,0x05:9,0x06:4,0x07:8,0x08:8,0x0A:4,0x0C:2,0x0E:3,0x0F:8,0x11:9,0x12:8,0x13:9,0x14:9}

def frames_legacy(data):
    """yields ('live', dict) / ('malformed', n)"""
    buf=[]; dropped=0
    for b in data:
        if b & 0x80:
            lost = dropped + len(buf); dropped = 0; buf=[b]
            if lost: yield ('malformed', lost)
            continue
        if not buf: dropped += 1; continue
        buf.append(b)
        if len(buf) == 5:
            f = buf; buf = []
            flags=set()
            if f[0]&0x10: flags.add('sensor-off')
            if f[2]&0x10: flags.add('sensor-fault')
            if f[2]&0x20: flags.add('searching')
            yield ('live', dict(pleth=f[1]&0x7f, pulse=((f[2]&0x40)<<1)|(f[3]&0x7f), spo2=f[4]&0x7f, flags=flags))

def frames_v46(data):
    buf=[]; dropped=0; want=0
    for b in data:
        if b < 0x80:
            lost = dropped + len(buf); dropped = 0; buf=[b]; want = V46_LEN.get(b, 0)
            if lost: yield ('malformed', lost)
            continue
        if not buf: dropped += 1; continue
        buf.append(b)
        if want == 0 or len(buf) < want: continue
        f = buf; buf = []
        if f[0] != 1: yield ('other', 0); continue
        st = f[1]; flags=set()
        if st&1: flags.add('sensor-off')
        if st&2: flags.add('searching')
        yield ('live', dict(pleth=f[3]&0x7f, pulse=(f[5]&0x7f)|((st&0x08)<<4), spo2=(f[6]&0x7f)|((st&0x10)<<3), flags=flags))

FLAG_ORDER = ["sensor-off","no-sensor","sensor-fault","searching","artifact","low-perfusion","low-signal-quality","ambient-light","out-of-range"]
def names(flags): return [f for f in FLAG_ORDER if f in flags]
INVALIDATING = {'sensor-off','no-sensor','sensor-fault','searching'}

def decode(data, proto):
    counts = dict(ok=0, checksum=0, malformed=0, invalid_value=0, dropped=0)
    readings = []
    state = dict(frames=0, samples=[], flags=set())
    def flush():
        if state['samples']:
            readings.append(dict(metric='pleth', value=0, valid=False, flags=names(state['flags']), samples=state['samples'], sample_rate=60))
        state['samples'] = []; state['flags'] = set()
    def numeric(metric, raw, sentinel, hi, flags):
        r = dict(metric=metric, value=0, valid=False, flags=names(flags))
        if raw != sentinel:
            r['value'] = raw
            inr = 0 <= raw <= hi
            fl = set(flags)
            if not inr: fl.add('out-of-range')
            r['flags'] = names(fl)
            r['valid'] = inr and not (flags & INVALIDATING)
        readings.append(r)
    def handle(ev):
        kind, v = ev
        if kind == 'malformed':
            flush(); counts['malformed'] += 1; counts['dropped'] += v
        elif kind == 'other':
            counts['ok'] += 1
        else:
            ok = (v['spo2'] == 127 or v['spo2'] <= 100) and (v['pulse'] == 255 or v['pulse'] <= 350)
            if state['frames'] % 60 == 0:
                numeric('spo2', v['spo2'], 127, 100, v['flags'])
                numeric('pulse_rate', v['pulse'], 255, 350, v['flags'])
            state['frames'] += 1
            state['samples'].append(v['pleth']); state['flags'] |= v['flags']
            if len(state['samples']) == 60: flush()
            counts['ok' if ok else 'invalid_value'] += 1
    if proto == 'auto':
        # probe: find the first byte index where one framing has 5 good live frames in a row
        held_start = 0; decided = None
        runs = {'legacy': 0, 'v46': 0}
        gens = {'legacy': frames_legacy, 'v46': frames_v46}
        # run both framers byte-by-byte
        # Re-running the framers on every prefix is quadratic, but the
        # captures are small and it keeps the model obviously byte-wise.
        def events_upto(fn, prefix):
            return list(fn(prefix))
        prev = {'legacy': 0, 'v46': 0}
        buf_start = 0; buf_len = 0
        for i in range(len(data)):
            if buf_len == 256:
                counts['malformed'] += 1; counts['dropped'] += 128
                buf_start += 128; buf_len -= 128
            buf_len += 1
            for name in ('legacy', 'v46'):
                evs = events_upto(gens[name], data[:i+1])
                for kind, v in evs[prev[name]:]:
                    if kind == 'live':
                        good = (v['spo2'] == 127 or v['spo2'] <= 100) and (v['pulse'] == 255 or v['pulse'] <= 350)
                        runs[name] = runs[name] + 1 if good else 0
                    elif kind == 'malformed':
                        runs[name] = 0
                prev[name] = len(evs)
            if runs['v46'] >= 5: decided = 'v46'
            elif runs['legacy'] >= 5: decided = 'legacy'
            if decided:
                rest = data[buf_start:]
                for ev in gens[decided](rest): handle(ev)
                return counts, readings, decided
        return counts, readings, 'auto'
    for ev in (frames_legacy if proto == 'legacy' else frames_v46)(data): handle(ev)
    return counts, readings, proto

def legacy_frame(pleth, spo2, pulse, finger_out=False, probe_err=False, searching=False, beep=False):
    b0 = 0x80 | (0 if finger_out else 5) | (0x10 if finger_out else 0) | (0x40 if beep else 0)
    b2 = ((pleth >> 3) & 0x0f) | (0x10 if probe_err else 0) | (0x20 if searching else 0) | ((pulse & 0x80) >> 1)
    return bytes([b0, pleth & 0x7f, b2, pulse & 0x7f, spo2 & 0x7f])

def v46_packet(pleth, spo2, pulse, finger_out=False, searching=False, beat=False):
    st = 0xE0 | (1 if finger_out else 0) | (2 if searching else 0) | ((pulse & 0x80) >> 4)
    b2 = 0x80 | (0 if finger_out else 5) | (0x40 if beat else 0)
    return bytes([0x01, st, b2, 0x80 | pleth, 0x80 | (pleth >> 1), 0x80 | (pulse & 0x7f), 0x80 | (spo2 & 0x7f), 0xff, 0xff])

def hexdump(data, comment):
    lines = ['# ' + c for c in comment.split('\n')]
    for i in range(0, len(data), 16):
        lines.append(' '.join('%02X' % b for b in data[i:i+16]))
    return '\n'.join(lines) + '\n'

def write(name, data, source, protocols, comment):
    with open(os.path.join(OUT, name + '.hex'), 'w') as f:
        f.write(hexdump(data, comment))
    for proto in protocols:
        counts, readings, decided = decode(data, proto)
        g = dict(source=source, protocol=proto, decided=decided, frames=counts, readings=readings)
        suffix = '' if len(protocols) == 1 else '.' + proto
        with open(os.path.join(OUT, name + suffix + '.json'), 'w') as f:
            json.dump(g, f, indent=1)
            f.write('\n')

# 1. headrotor's capture, device side, in order.
replies = h("0C 80 0C 80 06 80 80 87 11 80 81 81 80 80 80 80 80 0E 80 81 "
            "13 80 A0 A0 A0 A0 A0 A0 A0 14 80 A0 A0 A0 A0 A0 80 80 "
            "02 80 80 A0 A0 A0 A0 A0 A0 02 81 FF A0 A0 A0 A0 A0 A0 "
            "04 80 F5 F3 E5 F2 A0 A0 A0 03 80 A0 A0 A0 A0 A0 A0 A0")
live = h("01 E0 85 B3 96 C1 E1 FF FF 01 E0 85 B0 96 C1 E1 FF FF 01 E0 85 AE 95 C1 E1 FF FF "
         "01 E0 85 AC 95 C1 E1 FF FF 01 E0 85 AB 95 C1 E1 FF FF 01 E0 85 AA 95 C1 E1 FF FF "
         "01 E0 85 AA 95 C1 E1 FF FF")
write('headrotor-session', replies + live,
      'headrotor/contec_data stream_data.py: the device side of the captured session (replies to A7, A2, A0, B0, AC, B3, A8, AA, A9, then live data after A1), verbatim',
      ['v46', 'auto'],
      'headrotor/contec_data stream_data.py capture, device -> host bytes in order.\nCommand replies (FrameOK, no readings), then 7 live packets.')

# 2. MarkMLl's nominal packet.
write('markmll-nominal', h("01 e0 85 d5 9a bd e3 ff ff"),
      'MarkMLl/Contec_cms50dplus cms50dplus4v6/consoleapp.pas comment "Nominal operation", verbatim', ['v46'],
      'MarkMLl consoleapp.pas: nominal operation. PR 0xBD&0x7F = 61 (the comment says 53).')

# 3. The legacy worked examples of protocols.md 3.2.
write('legacy-examples', h("85 3C 03 48 61 80 00 40 48 00"),
      'protocols.md 3.2 worked examples: the layout example [I] and atbrask unittests.py PR 200 test vector [C]', ['legacy'],
      'protocols.md 3.2: 85 3C 03 48 61 (PR 72, SpO2 97) and 80 00 40 48 00 (PR 200).\nNumerics go out on the first frame only (cadence: every 60th frame).')

# 4. Synthetic legacy stream.
d = bytearray(h("03 48 61"))  # joined mid-frame
for i in range(140):
    pleth = (i * 2) % 128
    spo2, pulse = 97, 72
    kw = {}
    if 60 <= i < 70: pulse = 200
    if i == 75:
        d += legacy_frame(pleth, spo2, pulse)[:3]; continue   # two bytes lost
    if i == 90: spo2 = 115                                   # impossible value
    if 100 <= i < 110: kw['searching'] = True
    if i == 105: d += b'\x11\x22'                            # stray low bytes
    if 120 <= i < 135:
        kw['finger_out'] = True; spo2, pulse, pleth = 127, 255, 0
    if 119 <= i < 121: kw['probe_err'] = i == 119
    d += legacy_frame(pleth, spo2, pulse, beep=(i % 50 == 0), **kw)
write('legacy-stream', bytes(d),
      'synthetic, built for Vigil from the protocols.md 3.2 layout: joined mid-frame, PR 200 (byte 3 bit 6), a frame cut by two lost bytes, SpO2 115, searching, stray bytes, a probe error, finger out with SpO2 127 / PR 255',
      ['legacy', 'auto'], 'Synthetic legacy stream, 60 frames/s; see the .json source.')

# 5. Synthetic v4.6 stream.
d = bytearray(h("96 C1 E1 FF FF"))  # joined mid-packet
for i in range(130):
    pleth = (i * 3) % 128
    spo2, pulse = 96, 130   # ketamine tachycardia: PR bit 7 in status bit 3
    kw = {}
    if i == 20: d += h("0C 80")                              # a command reply
    if i == 30: d += v46_packet(pleth, spo2, pulse)[:5]; continue   # truncated
    if i == 40: d += h("FF FF")                              # stray high bytes
    if i == 45: d += h("09 80 81 82 83 84")                  # type of unknown length
    if 61 <= i < 70: kw['searching'] = True
    if 70 <= i < 80: spo2 = 88; pulse = 140
    if i >= 110: kw['finger_out'] = True; spo2, pulse, pleth = 127, 255, 0
    d += v46_packet(pleth, spo2, pulse, beat=(i % 25 < 2), **kw)
d += h("01 F0 85 B3 96 C1 E1 FF FF")                         # SpO2 MSB set: impossible
write('v46-stream', bytes(d),
      'synthetic, built for Vigil from the protocols.md 3.3 layout: joined mid-packet, PR 130/140 via status bit 3, a 0C 80 reply, a truncated packet, stray bytes, an unknown packet type, searching, SpO2 88, finger out with sentinels, and a packet with the SpO2 MSB set',
      ['v46', 'auto'], 'Synthetic firmware 4.6 stream, 60 packets/s; see the .json source.')

# 6. Noise at the start (a device switched on while the port was already open), then a legacy device.
noise = bytes(((i * 53) ^ (i >> 2)) & 0xff for i in range(400))
d = noise + b''.join(legacy_frame(i % 128, 98, 64) for i in range(70))
write('auto-noise-then-legacy', d,
      'synthetic: 400 bytes of noise that fit neither framing, then 70 legacy frames; read as auto',
      ['auto'], 'Synthetic: noise, then a legacy stream. Auto drops the noise 128 bytes at a time.')
