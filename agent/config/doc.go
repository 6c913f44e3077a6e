// Package config loads and validates Vigil's YAML configuration. Everything
// is checked at load time, so the running agent never meets an invalid value;
// every problem names the file, line and key, and all of them are reported at
// once (see Problems).
//
// The reference, with every key, its default and its meaning, is the
// commented example configs/vigil.yaml; a test loads it, so it cannot drift
// from this package. In short (defaults in brackets):
//
//	site                 required; MQTT topic level: 1-32 of [a-z0-9-]
//	room                 required; same rules as site
//	devices              required; a list of at least one device:
//	  id                 required, unique; 1-32 of [a-z0-9-]
//	  driver             required; a registered driver name (drivers.Names)
//	  port               absolute path, e.g. /dev/serial/by-id/...   } exactly
//	  usb                {vid, pid: 4 hex digits; serial: optional}  } one
//	  baud               [driver default] 300 600 1200 2400 4800 9600 19200 38400
//	                     57600 115200 230400 460800 921600
//	  data_bits          [driver default] 5-8
//	  parity             [driver default] none | odd | even | mark | space
//	  stop_bits          [driver default] 1 | 1.5 | 2
//	  stale_after        [metric default] duration >= 1s
//	  (any other key)    driver option, checked by the driver's Validate
//	mqtt.url             [embedded] embedded | tcp:// mqtt:// ssl:// tls:// mqtts:// ws:// wss://
//	mqtt.listen          [127.0.0.1:1883] embedded broker address; only with url: embedded
//	mqtt.client_id       [vigil-<site>-<room>]
//	mqtt.username        [none]
//	mqtt.password_file   [none] file holding the password; needs username
//	mqtt.ca_file         [system roots] TLS URLs only
//	mqtt.cert_file       [none] client certificate, with key_file; TLS URLs only
//	mqtt.key_file        [none] with cert_file
//	mqtt.topic_prefix    [vigil] no wildcards, no leading or trailing '/'
//	mqtt.keep_alive      [10s] whole seconds, 1s to 18h12m15s
//	http.listen          [127.0.0.1:9817] metrics, health and API listener
//	metrics.stale_after  [10s] duration >= 1s
//	metrics.nibp_stale_after [20m] duration >= 1s
//
// Two devices may not share a port or match the same USB adapter.
// Durations are Go duration strings ("10s", "5m", "1h30m"); a bare number is
// an error because its unit would be a guess. Relative file paths (the secret
// and TLS files) are taken from the config file's directory. Secrets are read
// at load (mqtt.password_file into MQTT.Password) and are never printed: see
// MQTT.String and MQTT.LogValue.
package config
