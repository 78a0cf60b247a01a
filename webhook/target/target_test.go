package target

import (
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		arg  string
		kind Kind
		host string
		port int
		url  string
		dest string
		name string // "" = arg
	}{
		{arg: "dns:myservice.default.svc.cluster.local.", kind: DNS, host: "myservice.default.svc.cluster.local."},
		{arg: "dns:localhost", kind: DNS, host: "localhost"},
		{arg: "dns:_sip._tcp.example.com", kind: DNS, host: "_sip._tcp.example.com"},
		{arg: "DNS:Example.COM", kind: DNS, host: "Example.COM"},
		{arg: "dns:123.example.com", kind: DNS, host: "123.example.com"},
		{arg: "tcp:mydb.default.svc.cluster.local.:5432", kind: TCP, host: "mydb.default.svc.cluster.local.", port: 5432},
		{arg: "tcp:10.0.0.1:80", kind: TCP, host: "10.0.0.1", port: 80},
		{arg: "tcp:[::1]:8080", kind: TCP, host: "::1", port: 8080},
		{arg: "tcp:[fe80::1%eth0]:22", kind: TCP, host: "fe80::1%eth0", port: 22},
		{arg: "tcp:db:65535", kind: TCP, host: "db", port: 65535},
		{arg: "tcp:db:1", kind: TCP, host: "db", port: 1},
		{arg: "http://api.default.svc.cluster.local.:8080/healthz", kind: HTTP, url: "http://api.default.svc.cluster.local.:8080/healthz"},
		{arg: "https://example.com/ready?x=1&y=2", kind: HTTP, url: "https://example.com/ready?x=1&y=2"},
		{arg: "http://[::1]:9000/", kind: HTTP, url: "http://[::1]:9000/"},
		{arg: "http://10.0.0.1", kind: HTTP, url: "http://10.0.0.1"},
		{
			arg: "http://user:secret@example.com/", kind: HTTP, url: "http://user:secret@example.com/",
			name: "http://user:xxxxx@example.com/",
		},
		{
			arg: "fetch:/config/app.json=http://config.default.svc.cluster.local./app.json", kind: Fetch,
			url: "http://config.default.svc.cluster.local./app.json", dest: "/config/app.json",
		},
		{
			// "=" in the query string and in the path.
			arg: "fetch:/data/a=b/file=https://h.example/get?token=abc&x=y", kind: Fetch,
			url: "https://h.example/get?token=abc&x=y", dest: "/data/a=b/file",
		},
		{arg: "fetch:/a//b/../c=http://h/", kind: Fetch, url: "http://h/", dest: "/a/c"},
		{
			arg: "fetch:/x=https://u:pw@h/", kind: Fetch, url: "https://u:pw@h/", dest: "/x",
			name: "fetch:/x=https://u:xxxxx@h/",
		},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := Parse(tt.arg)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.arg, err)
			}
			if got.Kind != tt.kind || got.Host != tt.host || got.Port != tt.port || got.Dest != tt.dest {
				t.Errorf("got kind=%s host=%q port=%d dest=%q, want kind=%s host=%q port=%d dest=%q",
					got.Kind, got.Host, got.Port, got.Dest, tt.kind, tt.host, tt.port, tt.dest)
			}
			gotURL := ""
			if got.URL != nil {
				gotURL = got.URL.String()
			}
			if gotURL != tt.url {
				t.Errorf("url = %q, want %q", gotURL, tt.url)
			}
			wantName := tt.name
			if wantName == "" {
				wantName = tt.arg
			}
			if got.Name != wantName {
				t.Errorf("name = %q, want %q", got.Name, wantName)
			}
			if got.Arg != tt.arg || got.String() != tt.arg {
				t.Errorf("arg = %q, want %q", got.Arg, tt.arg)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		arg     string
		wantErr string
	}{
		{"", "unknown target type (want dns:, tcp:, http://, https://, fetch:, job:, deployment:, statefulset:, daemonset: or endpoints:)"},
		{"myservice:80", "unknown target type"},
		{"udp:1.2.3.4:53", "unknown target type"},
		{"--timeout=5s", "unknown target type"},
		{"dns:", "missing name"},
		{"dns:.", "bad name"},
		{"dns:a..b", "empty label"},
		{"dns:bad_chars!.example", "invalid character"},
		{"dns:has space", "invalid character"},
		{"dns:-a.example", "starts or ends with '-'"},
		{"dns:a-.example", "starts or ends with '-'"},
		{"dns:" + strings.Repeat("a", 64) + ".com", "longer than 63"},
		{"dns:" + strings.Repeat("abcdefghi.", 26), "longer than 253"},
		{"dns:1.2.3.4", "all digits"},
		{"tcp:", "expected host:port"},
		{"tcp:foo", "missing port"},
		{"tcp:foo:", "missing port"},
		{"tcp:foo:http", "must be a number between 1 and 65535"},
		{"tcp:foo:0", "must be a number between 1 and 65535"},
		{"tcp:foo:65536", "must be a number between 1 and 65535"},
		{"tcp:foo:+80", "must be a number between 1 and 65535"},
		{"tcp:foo:080", "must be a number between 1 and 65535"},
		{"tcp:foo:-1", "must be a number between 1 and 65535"},
		{"tcp:foo:000080", "must be a number between 1 and 65535"},
		{"tcp::80", "missing host"},
		{"tcp:::1:80", "brackets"},
		{"tcp:[1.2.3.4]:80", "bad IPv6"},
		{"tcp:[nothex::z]:80", "bad IPv6"},
		{"tcp:a..b:80", "empty label"},
		// Numeric names look like IPv4 addresses and never resolve.
		{"tcp:256.1.1.1:80", "all digits"},
		{"tcp:1.2.3:80", "all digits"},
		{"tcp:010.0.0.1:80", "all digits"},
		{"tcp:80:80", "all digits"},
		{"http://", "missing host"},
		{"http:///path", "missing host"},
		{"ftp://x/", "unknown target type"},
		{"http://host:notaport/", "bad URL"},
		{"http://host:0/", "must be a number between 1 and 65535"},
		{"http://host:080/", "must be a number between 1 and 65535"},
		{"http://ho st/", "bad URL"},
		{"http://[::1/", "bad URL"},
		{"http://[1.2.3.4]/", "bad URL"},
		{"http://256.1.1.1/", "all digits"},
		// Found by cross-checking the webhook against the binary: an empty port.
		{"http://myapi:/healthz", "missing port"},
		{"http://h:/", "missing port"},
		{"http://b:?", "missing port"},
		{"fetch:", "want fetch:"},
		{"fetch:/dest", "want fetch:"},
		{"fetch:/dest=ftp://h/x", "want fetch:"},
		{"fetch:=http://h/", "missing destination"},
		{"fetch:relative/path=http://h/", "not an absolute path"},
		{"fetch:/dir/=http://h/", "names a directory"},
		{"fetch:/=http://h/", "names a directory"},
		{"fetch:/a\nb=http://h/", "control characters"},
		{"fetch:/dest=http://", "missing host"},
		{"fetch:/a=http://h:/", "missing port"},
		{"fetch:/aab=https://a:?0", "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := Parse(tt.arg)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error containing %q", tt.arg, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.arg, err, tt.wantErr)
			}
		})
	}
}

func TestParseAll(t *testing.T) {
	got, err := ParseAll([]string{"dns:a.", "tcp:b:1", "dns:a.", "fetch:/x=http://h/1"})
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, tg := range got {
		args = append(args, tg.Arg)
	}
	if want := "dns:a.,tcp:b:1,fetch:/x=http://h/1"; strings.Join(args, ",") != want {
		t.Errorf("targets = %v, want %s (exact duplicates dropped, order kept)", args, want)
	}

	_, err = ParseAll([]string{"fetch:/x=http://h/1", "fetch:/y/../x=http://h/2"})
	if err == nil || !strings.Contains(err.Error(), `"fetch:/y/../x=http://h/2"`) || !strings.Contains(err.Error(), "also written by") {
		t.Errorf("two fetches to one file: error = %v, want one naming the second target", err)
	}

	_, err = ParseAll([]string{"dns:ok.", "tcp:nope"})
	if err == nil || !strings.Contains(err.Error(), `invalid target "tcp:nope"`) {
		t.Errorf("error = %v, want it to name the bad target", err)
	}
}

func TestConstructors(t *testing.T) {
	ok := []struct {
		got  func() (*Target, error)
		want string
		kind Kind
	}{
		{func() (*Target, error) { return NewDNS("db.shop.svc.cluster.local.") }, "dns:db.shop.svc.cluster.local.", DNS},
		{func() (*Target, error) { return NewTCP("db.shop.svc.cluster.local.", 5432) }, "tcp:db.shop.svc.cluster.local.:5432", TCP},
		{func() (*Target, error) { return NewTCP("fd00::1", 80) }, "tcp:[fd00::1]:80", TCP},
		{func() (*Target, error) { return NewTCP("10.0.0.1", 80) }, "tcp:10.0.0.1:80", TCP},
		{func() (*Target, error) { return NewHTTP("http://h:8080/x?a=b") }, "http://h:8080/x?a=b", HTTP},
		{func() (*Target, error) { return NewFetch("/depends-on/fetch/0-a.json", "https://h/a?x=1") },
			"fetch:/depends-on/fetch/0-a.json=https://h/a?x=1", Fetch},
		{func() (*Target, error) { return NewFetch("/a=b", "http://h/") }, "fetch:/a=b=http://h/", Fetch},
	}
	for _, tt := range ok {
		got, err := tt.got()
		if err != nil || got.Arg != tt.want || got.Kind != tt.kind {
			t.Errorf("got %+v, %v; want %s", got, err, tt.want)
			continue
		}
		if again, err := Parse(got.Arg); err != nil || again.Kind != tt.kind {
			t.Errorf("Parse(%q) = %v, %v", got.Arg, again, err)
		}
	}
	bad := []struct {
		got  func() (*Target, error)
		want string
	}{
		{func() (*Target, error) { return NewDNS("a..b") }, "empty label"},
		{func() (*Target, error) { return NewDNS(strings.Repeat("a.", 127) + "svc.") }, "longer than 253"},
		{func() (*Target, error) { return NewTCP("", 80) }, "missing host"},
		{func() (*Target, error) { return NewTCP("h", 0) }, "must be a number between 1 and 65535"},
		{func() (*Target, error) { return NewTCP("h", 65536) }, "must be a number between 1 and 65535"},
		{func() (*Target, error) { return NewTCP("1.2.3", 80) }, "all digits"},
		{func() (*Target, error) { return NewHTTP("http://h:/") }, "missing port"},
		{func() (*Target, error) { return NewHTTP("tcp:h:1") }, "is not a http target"},
		{func() (*Target, error) { return NewFetch("/a=http://x/b", "http://h/") }, "must not contain =http://"},
		{func() (*Target, error) { return NewFetch("/a", "http://h:?") }, "missing port"},
		{func() (*Target, error) { return NewFetch("rel", "http://h/") }, "absolute"},
	}
	for _, tt := range bad {
		got, err := tt.got()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %+v, %v; want an error containing %q", got, err, tt.want)
		}
	}
}

func TestUsage(t *testing.T) {
	got := Usage("  ")
	for _, want := range []string{
		"  dns:NAME             ready when NAME resolves (A or AAAA record)\n",
		"  http://URL\n  https://URL          ready on a 2xx answer",
		"  fetch:/ABS/PATH=URL  GET the http(s) URL",
		"  job:NS/NAME          ready when the Job has completed; fails at once when\n                       it has failed\n",
		"  endpoints:NS/NAME\n  endpoints:NS/NAME:PORT ready when the Service has a ready endpoint",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Usage lacks %q:\n%s", want, got)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{DNS: "dns", TCP: "tcp", HTTP: "http", Fetch: "fetch", Job: "job", Deployment: "deployment",
		StatefulSet: "statefulset", DaemonSet: "daemonset", Endpoints: "endpoints", 0: "Kind(0)"} {
		if k.String() != want {
			t.Errorf("%d: %q, want %q", int(k), k.String(), want)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts it accepts again from the
// parsed fields' constructor (the webhook builds arguments that way).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"dns:a.b.", "tcp:h:1", "tcp:[::1]:2", "http://h:1/x", "https://u:p@h/", "fetch:/a=http://h/",
		"fetch:/a=b=https://h/?c=d", "http://h:/", "tcp:1.2.3:4", "job:a/b", "Endpoints:a/b:c", "endpoints:a/b:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		tg, err := Parse(arg)
		if err != nil {
			return
		}
		var again *Target
		switch tg.Kind {
		case DNS:
			again, err = NewDNS(tg.Host)
		case TCP:
			again, err = NewTCP(tg.Host, tg.Port)
		case HTTP:
			again, err = NewHTTP(tg.Arg)
		case Fetch:
			again, err = Parse(tg.Arg)
		default:
			if !tg.Kind.IsObject() {
				t.Fatalf("%q: unexpected kind %s", arg, tg.Kind)
			}
			again, err = NewObject(tg.Kind, tg.Namespace, tg.Object, tg.ObjectPort)
		}
		if err != nil {
			t.Fatalf("%q parses, but its constructor fails: %v", arg, err)
		}
		if again.Kind != tg.Kind {
			t.Fatalf("%q: kind %s, then %s", arg, tg.Kind, again.Kind)
		}
	})
}
