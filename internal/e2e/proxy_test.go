package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/server"
)

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNginx runs nginx in the foreground with docs/nginx.conf, its
// upstream pointed at target and its server listening on a high port, as
// a deployment behind nginx on a port other than 80 would. It returns the
// proxy's address and its access log.
func startNginx(t *testing.T, target string) (addr, accessLog string) {
	t.Helper()
	exe, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nginx not found (test.sh installs nginx-light): %v", err)
		}
		t.Skip("nginx not found (apt-get install nginx-light)")
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "docs", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := string(src)
	conf = regexp.MustCompile(`(?m)^\s*server 127\.0\.0\.1:\d+;\n`).ReplaceAllString(conf, "")
	conf = strings.Replace(conf, "upstream hotline {", "upstream hotline {\n    server "+target+";", 1)
	conf = strings.Replace(conf, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port), 1)
	if !strings.Contains(conf, "server "+target) || !strings.Contains(conf, fmt.Sprint(port)) {
		t.Fatalf("docs/nginx.conf no longer has the shape this test rewrites:\n%s", conf)
	}
	dir := t.TempDir()
	accessLog = filepath.Join(dir, "access.log")
	main := fmt.Sprintf(`user root;
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[2]s;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/hotline.conf;
}
`, dir, accessLog)
	for name, text := range map[string]string{"nginx.conf": main, "hotline.conf": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful stop of nginx and its worker
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if i == 200 {
			t.Fatal("nginx did not listen within 10 s")
		}
	}
	return addr, accessLog
}

// TestBehindNginx: the chat page works through nginx configured as
// docs/nginx.conf says, on a port other than 80, with JWT auth, over each
// transport; and nginx's access log never holds the token.
func TestBehindNginx(t *testing.T) {
	testBehindProxy(t, startNginx)
}

func testBehindProxy(t *testing.T, start func(*testing.T, string) (string, string)) {
	secret := []byte("e2e-secret-e2e-secret-e2e-secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.Sign(secret, auth.Identity{UserID: "bob", Name: "Bob"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerWith(t, nil, func(c *server.Config) { c.Auth = v })
	addr, accessLog := start(t, ts.addr)
	b := browser(t)
	for _, tr := range []string{"websocket", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			p := page(t, b, "http://"+addr+"/?transport="+tr+"&room=proxied-"+tr+"#token="+token)
			connected(t, p)
			if got := eval[string](t, p, "hotline.transport"); got != tr {
				t.Fatalf("transport = %q, want %q", got, tr)
			}
			waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
			say(t, p, "through the proxy over "+tr)
			sees(t, p, "through the proxy over "+tr)
			ts.publish("chat:proxied-"+tr, "from the API")
			sees(t, p, "from the API")
		})
	}
	log, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 {
		t.Fatal("the proxy logged nothing")
	}
	if strings.Contains(string(log), token) || strings.Contains(string(log), "token=") {
		t.Errorf("the token is in the proxy's access log:\n%s", log)
	}
	if !strings.Contains(string(log), "GET /chat HTTP/1.1\" 101") {
		t.Errorf("no WebSocket upgrade in the proxy's access log:\n%s", log)
	}
}

// startApache runs Apache httpd in the foreground (-X) with
// docs/apache.conf, its balancer members pointed at target and its
// virtual host on a high port. It returns the proxy's address and its
// access log.
func startApache(t *testing.T, target string) (addr, accessLog string) {
	t.Helper()
	exe, err := exec.LookPath("apache2")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("apache2 not found (test.sh installs apache2): %v", err)
		}
		t.Skip("apache2 not found (apt-get install apache2)")
	}
	const modules = "/usr/lib/apache2/modules"
	src, err := os.ReadFile(filepath.Join("..", "..", "docs", "apache.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := string(src)
	members := regexp.MustCompile(`(?m)^(\s*BalancerMember) "http://127\.0\.0\.1:\d+" route=(\w+)(.*)$`)
	n := 0
	conf = members.ReplaceAllStringFunc(conf, func(line string) string {
		n++
		if n > 1 {
			return "" // one node is enough here
		}
		m := members.FindStringSubmatch(line)
		return m[1] + ` "http://` + target + `" route=` + m[2] + m[3]
	})
	conf = strings.Replace(conf, "<VirtualHost *:80>", fmt.Sprintf("<VirtualHost 127.0.0.1:%d>", port), 1)
	if n != 2 || !strings.Contains(conf, fmt.Sprint(port)) {
		t.Fatalf("docs/apache.conf no longer has the shape this test rewrites:\n%s", conf)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // the child runs as nobody
	accessLog = filepath.Join(dir, "access.log")
	var mods strings.Builder
	for _, m := range []string{"mpm_event", "authz_core", "proxy", "proxy_http", "proxy_balancer", "lbmethod_byrequests", "slotmem_shm", "headers"} {
		fmt.Fprintf(&mods, "LoadModule %s_module %s/mod_%s.so\n", m, modules, m)
	}
	main := fmt.Sprintf(`ServerRoot %[1]s
ServerName 127.0.0.1
Listen 127.0.0.1:%[3]d
PidFile %[1]s/httpd.pid
DefaultRuntimeDir %[1]s
Mutex file:%[1]s default
User nobody
Group nogroup
%[4]sErrorLog %[1]s/error.log
LogLevel warn
LogFormat "%%h %%l %%u %%t \"%%r\" %%>s %%b" common
CustomLog %[2]s common
Include %[1]s/hotline.conf
`, dir, accessLog, port, mods.String())
	for name, text := range map[string]string{"httpd.conf": main, "hotline.conf": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-X", "-f", filepath.Join(dir, "httpd.conf"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("apache error.log:\n%s", b)
			}
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("apache2 exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if i == 200 {
			t.Fatal("apache2 did not listen within 10 s")
		}
	}
	return addr, accessLog
}

// TestBehindApache: the same as TestBehindNginx through Apache httpd
// configured as docs/apache.conf says.
func TestBehindApache(t *testing.T) {
	testBehindProxy(t, startApache)
}
