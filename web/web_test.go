package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestServesClientAndDeclarations(t *testing.T) {
	for path, ctype := range map[string]string{
		"/hotline.js":       "text/javascript",
		"/hotline.d.ts":     "application/typescript",
		"/":                 "text/html",
		"/assets/chat.js":   "text/javascript",
		"/dashboard":        "text/html",
		"/assets/style.css": "text/css",
	} {
		res, body := get(t, path)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) || body == "" {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), len(body), ctype)
		}
	}
	if res, _ := get(t, "/package.json"); res.StatusCode != 404 {
		t.Errorf("GET /package.json: %d, want 404", res.StatusCode)
	}
}

// TestDeclarationsMatchClient keeps hotline.d.ts in step with hotline.js:
// every public method and option of the client is declared.
func TestDeclarationsMatchClient(t *testing.T) {
	js, err := os.ReadFile("client/hotline.js")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := os.ReadFile("client/hotline.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	// Public methods: two-space-indented "name(" at the start of a line in
	// the class, not starting with "_" or "constructor".
	methods := regexp.MustCompile(`(?m)^  ([a-z][A-Za-z]*)\(`).FindAllStringSubmatch(string(js), -1)
	if len(methods) < 5 {
		t.Fatalf("found %d methods in hotline.js; the pattern is stale", len(methods))
	}
	for _, m := range methods {
		if m[1] == "constructor" {
			continue
		}
		if !regexp.MustCompile(`(?m)^  ` + m[1] + `\(`).Match(dts) {
			t.Errorf("hotline.d.ts does not declare Hotline.%s", m[1])
		}
	}
	options := regexp.MustCompile(`options\.([A-Za-z]+)`).FindAllStringSubmatch(string(js), -1)
	for _, o := range options {
		if !strings.Contains(string(dts), "  "+o[1]+"?:") {
			t.Errorf("hotline.d.ts does not declare the option %s", o[1])
		}
	}
	handlers := regexp.MustCompile(`handlers\.(on[A-Za-z]+)`).FindAllStringSubmatch(string(js), -1)
	for _, h := range handlers {
		if !strings.Contains(string(dts), "  "+h[1]+"?(") {
			t.Errorf("hotline.d.ts does not declare the handler %s", h[1])
		}
	}
}
