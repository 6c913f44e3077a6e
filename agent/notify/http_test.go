package notify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestVerdictForStatus(t *testing.T) {
	cases := map[int]Verdict{
		100: GiveUp, 199: GiveUp,
		200: Delivered, 201: Delivered, 202: Delivered, 204: Delivered, 299: Delivered,
		300: GiveUp, 301: GiveUp, 302: GiveUp, 307: GiveUp, 308: GiveUp,
		400: GiveUp, 401: GiveUp, 403: GiveUp, 404: GiveUp, 413: GiveUp, 422: GiveUp, 499: GiveUp,
		408: Retry, 429: Retry,
		500: Retry, 502: Retry, 503: Retry, 504: Retry, 599: Retry,
		0: GiveUp, -1: GiveUp,
	}
	for code, want := range cases {
		if got := VerdictForStatus(code); got != want {
			t.Errorf("VerdictForStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		in    string
		limit time.Duration
		want  time.Duration
	}{
		{"", MaxRetryAfter, 0},
		{"   ", MaxRetryAfter, 0},
		{"0", MaxRetryAfter, 0},
		{"7", MaxRetryAfter, 7 * time.Second},
		{" 7 ", MaxRetryAfter, 7 * time.Second},
		{"300", MaxRetryAfter, MaxRetryAfter},
		{"301", MaxRetryAfter, MaxRetryAfter},
		{"86400", MaxRetryAfter, MaxRetryAfter},
		{"999999", MaxRetryAfter, MaxRetryAfter},
		{"99999999999999999999999", MaxRetryAfter, MaxRetryAfter}, // beyond uint64: still a long wait
		{"-1", MaxRetryAfter, 0},
		{"+5", MaxRetryAfter, 0}, // delay-seconds has no sign (RFC 9110 10.2.3)
		{"1.5", MaxRetryAfter, 0},
		{"soon", MaxRetryAfter, 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), MaxRetryAfter, 30 * time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), MaxRetryAfter, MaxRetryAfter},
		{now.Add(-time.Minute).Format(http.TimeFormat), MaxRetryAfter, 0},
		{"Tue, 04 Mar 2025 10:01:00 GMT", 24 * time.Hour, time.Minute},
		{"Tue, 04 Mar 2025 09:00:00 GMT", 24 * time.Hour, 0},
		{"Wed, 05 Mar 2025 12:00:00 GMT", 24 * time.Hour, 24 * time.Hour},
		{"999999999", 24 * time.Hour, 24 * time.Hour},
		{"86400", 24 * time.Hour, 24 * time.Hour},
		{"86399", 24 * time.Hour, 86399 * time.Second},
		{"30", 24 * time.Hour, 30 * time.Second},
		{"30", 0, 0},
	}
	for _, tc := range cases {
		if got := RetryAfter(tc.in, now, tc.limit); got != tc.want {
			t.Errorf("RetryAfter(%q, now, %s) = %s, want %s", tc.in, tc.limit, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	cases := []struct {
		in    string
		limit int
		want  string
	}{
		{"", 10, ""},
		{"  plain  ", 10, "plain"},
		{"a\r\nb\tc\x00d", 20, "a  b c d"},
		{"bad \xff utf8", 20, "bad \uFFFD utf8"},
		{strings.Repeat("x", 300), 200, strings.Repeat("x", 200) + "…"},
		{strings.Repeat("é", 5), 5, "ééééé"},
		{strings.Repeat("é", 6), 5, "ééééé…"},
		{"\u0085next", 10, "next"}, // NEL is a control character too
	}
	for _, tc := range cases {
		if got := OneLine(tc.in, tc.limit); got != tc.want {
			t.Errorf("OneLine(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

func TestWithoutURLDropsTheRequestURLAndKeepsTheCause(t *testing.T) {
	const secretURL = "/topic-secret?token=tk_private"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+secretURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.Client().Do(req)
	if err == nil || !strings.Contains(err.Error(), "tk_private") {
		t.Fatalf("client error %v; the test needs one that quotes the URL", err)
	}
	got := WithoutURL(err)
	if strings.Contains(got.Error(), "tk_private") || strings.Contains(got.Error(), "topic-secret") {
		t.Errorf("WithoutURL kept the URL: %q", got)
	}
	if !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("WithoutURL(%v) = %v, lost the deadline cause", err, got)
	}

	plain := errors.New("not a url error")
	if WithoutURL(plain) != plain {
		t.Errorf("WithoutURL changed an error that carries no URL")
	}
	if WithoutURL(nil) != nil {
		t.Errorf("WithoutURL(nil) is not nil")
	}
}
