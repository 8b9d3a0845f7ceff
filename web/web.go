// Package web holds hotline's browser side, embedded in the binary: the
// JavaScript client (client/hotline.js, a dependency-free ES module with
// automatic fallback from WebSocket to long polling and ajax polling, with
// its TypeScript declarations; the folder is also an npm package), the chat
// page and the live dashboard.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static client/hotline.js client/hotline.d.ts
var static embed.FS

// Handler serves the pages: / (chat), /dashboard, /hotline.js with
// /hotline.d.ts beside it, and the assets they use. Everything else under /
// is 404.
func Handler() http.Handler {
	files, _ := fs.Sub(static, "static") // the directories are embedded
	client, _ := fs.Sub(static, "client")
	fileServer := http.FileServerFS(files)
	serve := func(fsys fs.FS, name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			if strings.HasSuffix(name, ".ts") {
				w.Header().Set("Content-Type", "application/typescript; charset=utf-8")
			}
			http.ServeFileFS(w, r, fsys, name)
		}
	}
	page := func(name string) http.HandlerFunc { return serve(files, name) }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page("index.html"))
	mux.HandleFunc("GET /dashboard", page("dashboard.html"))
	mux.HandleFunc("GET /hotline.js", serve(client, "hotline.js"))
	mux.HandleFunc("GET /hotline.d.ts", serve(client, "hotline.d.ts"))
	mux.Handle("GET /assets/", http.StripPrefix("/assets", fileServer))
	return mux
}
