package webhook

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestContainerJSON: the templates give exactly json.Marshal's bytes, whatever
// the args and the configuration.
func TestContainerJSON(t *testing.T) {
	noCPULimit := DefaultConfig()
	noCPULimit.WaitImage = `registry.example.com:5000/a&b/<wfs>:"1"`
	delete(noCPULimit.Resources.Limits, corev1.ResourceCPU)
	noCPULimit.FetchSizeLimit = resource.MustParse("1Gi")
	for _, cfg := range []Config{DefaultConfig(), noCPULimit} {
		in, err := NewInjector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			nil, {}, {"dns:a."}, {"--timeout=1m30s", "tcp:mydb.shop.svc.cluster.local.:5432", "http://x/?a=1&b=<2>"},
			{`"quoted"`, "é\u2028\x00", argsPlaceholder, `"args":["x"]`},
		} {
			for _, c := range []corev1.Container{in.container(WaitContainerName, args), in.fetchContainer(args)} {
				want, err := json.Marshal(c)
				if err != nil {
					t.Fatal(err)
				}
				got, err := in.containerJSON(&c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s %q:\n got %s\nwant %s", c.Name, args, got, want)
				}
			}
		}
		cs := []corev1.Container{in.container(WaitContainerName, []string{"dns:a."}), in.fetchContainer([]string{"fetch:/a=http://x/"})}
		want, _ := json.Marshal(cs)
		if got, err := in.containersJSON(cs); err != nil || !bytes.Equal(got, want) {
			t.Errorf("list:\n got %s, %v\nwant %s", got, err, want)
		}
	}
}
