package main

import (
	"strings"
	"testing"
)

func TestParseTargetValid(t *testing.T) {
	tests := []struct {
		arg  string
		kind targetKind
		host string
		port string
		url  string
		dest string
		name string // "" = arg
	}{
		{arg: "dns:myservice.default.svc.cluster.local.", kind: kindDNS, host: "myservice.default.svc.cluster.local."},
		{arg: "dns:localhost", kind: kindDNS, host: "localhost"},
		{arg: "dns:_sip._tcp.example.com", kind: kindDNS, host: "_sip._tcp.example.com"},
		{arg: "DNS:Example.COM", kind: kindDNS, host: "Example.COM"},
		{arg: "tcp:mydb.default.svc.cluster.local.:5432", kind: kindTCP, host: "mydb.default.svc.cluster.local.", port: "5432"},
		{arg: "tcp:10.0.0.1:80", kind: kindTCP, host: "10.0.0.1", port: "80"},
		{arg: "tcp:[::1]:8080", kind: kindTCP, host: "::1", port: "8080"},
		{arg: "tcp:[fe80::1%eth0]:22", kind: kindTCP, host: "fe80::1%eth0", port: "22"},
		{arg: "tcp:db:65535", kind: kindTCP, host: "db", port: "65535"},
		{arg: "http://api.default.svc.cluster.local.:8080/healthz", kind: kindHTTP, url: "http://api.default.svc.cluster.local.:8080/healthz"},
		{arg: "https://example.com/ready?x=1&y=2", kind: kindHTTP, url: "https://example.com/ready?x=1&y=2"},
		{arg: "http://[::1]:9000/", kind: kindHTTP, url: "http://[::1]:9000/"},
		{arg: "http://10.0.0.1", kind: kindHTTP, url: "http://10.0.0.1"},
		{
			arg: "http://user:secret@example.com/", kind: kindHTTP, url: "http://user:secret@example.com/",
			name: "http://user:xxxxx@example.com/",
		},
		{
			arg: "fetch:/config/app.json=http://config.default.svc.cluster.local./app.json", kind: kindFetch,
			url: "http://config.default.svc.cluster.local./app.json", dest: "/config/app.json",
		},
		{
			// "=" in the query string and in the path.
			arg: "fetch:/data/a=b/file=https://h.example/get?token=abc&x=y", kind: kindFetch,
			url: "https://h.example/get?token=abc&x=y", dest: "/data/a=b/file",
		},
		{arg: "fetch:/a//b/../c=http://h/", kind: kindFetch, url: "http://h/", dest: "/a/c"},
		{
			arg: "fetch:/x=https://u:pw@h/", kind: kindFetch, url: "https://u:pw@h/", dest: "/x",
			name: "fetch:/x=https://u:xxxxx@h/",
		},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := parseTarget(tt.arg)
			if err != nil {
				t.Fatalf("parseTarget(%q): %v", tt.arg, err)
			}
			if got.kind != tt.kind || got.host != tt.host || got.port != tt.port || got.dest != tt.dest {
				t.Errorf("got kind=%d host=%q port=%q dest=%q, want kind=%d host=%q port=%q dest=%q",
					got.kind, got.host, got.port, got.dest, tt.kind, tt.host, tt.port, tt.dest)
			}
			gotURL := ""
			if got.url != nil {
				gotURL = got.url.String()
			}
			if gotURL != tt.url {
				t.Errorf("url = %q, want %q", gotURL, tt.url)
			}
			wantName := tt.name
			if wantName == "" {
				wantName = tt.arg
			}
			if got.name != wantName {
				t.Errorf("name = %q, want %q", got.name, wantName)
			}
			if got.raw != tt.arg {
				t.Errorf("raw = %q, want %q", got.raw, tt.arg)
			}
		})
	}
}

func TestParseTargetInvalid(t *testing.T) {
	tests := []struct {
		arg     string
		wantErr string
	}{
		{"", "unknown target type"},
		{"myservice:80", "unknown target type"},
		{"udp:1.2.3.4:53", "unknown target type"},
		{"dns:", "missing name"},
		{"dns:.", "bad name"},
		{"dns:a..b", "empty label"},
		{"dns:bad_chars!.example", "invalid character"},
		{"dns:has space", "invalid character"},
		{"dns:" + strings.Repeat("a", 64) + ".com", "longer than 63"},
		{"dns:" + strings.Repeat("abcdefghi.", 26), "longer than 253"},
		{"tcp:", "want tcp:HOST:PORT"},
		{"tcp:foo", "missing port"},
		{"tcp:foo:", "missing port"},
		{"tcp:foo:http", "bad port"},
		{"tcp:foo:0", "bad port"},
		{"tcp:foo:65536", "bad port"},
		{"tcp::80", "missing name"},
		{"tcp:::1:80", "brackets"},
		{"tcp:[1.2.3.4]:80", "bad IPv6"},
		{"tcp:[nothex::z]:80", "bad IPv6"},
		{"tcp:a..b:80", "empty label"},
		{"http://", "missing host"},
		{"http:///path", "missing host"},
		{"http://host:notaport/", "bad URL"},
		{"http://host:0/", "bad port"},
		{"http://ho st/", "bad URL"},
		{"http://[::1/", "bad URL"},
		{"fetch:", "want fetch:"},
		{"fetch:/dest", "want fetch:"},
		{"fetch:/dest=ftp://h/x", "want fetch:"},
		{"fetch:=http://h/", "missing destination"},
		{"fetch:relative/path=http://h/", "not an absolute path"},
		{"fetch:/dir/=http://h/", "names a directory"},
		{"fetch:/=http://h/", "names a directory"},
		{"fetch:/a\nb=http://h/", "control characters"},
		{"fetch:/dest=http://", "missing host"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := parseTarget(tt.arg)
			if err == nil {
				t.Fatalf("parseTarget(%q) = %+v, want error containing %q", tt.arg, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseTarget(%q) error = %q, want it to contain %q", tt.arg, err, tt.wantErr)
			}
		})
	}
}

func TestParseTargets(t *testing.T) {
	got, err := parseTargets([]string{"dns:a.", "tcp:b:1", "dns:a.", "fetch:/x=http://h/1"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range got {
		names = append(names, tg.raw)
	}
	if want := "dns:a.,tcp:b:1,fetch:/x=http://h/1"; strings.Join(names, ",") != want {
		t.Errorf("targets = %v, want %s (exact duplicates dropped, order kept)", names, want)
	}

	_, err = parseTargets([]string{"fetch:/x=http://h/1", "fetch:/y/../x=http://h/2"})
	if err == nil || !strings.Contains(err.Error(), `"fetch:/y/../x=http://h/2"`) || !strings.Contains(err.Error(), "also written by") {
		t.Errorf("two fetches to one file: error = %v, want one naming the second target", err)
	}

	_, err = parseTargets([]string{"dns:ok.", "tcp:nope"})
	if err == nil || !strings.Contains(err.Error(), `invalid target "tcp:nope"`) {
		t.Errorf("error = %v, want it to name the bad target", err)
	}
}
