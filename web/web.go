// Package web holds hotline's browser side, embedded in the binary: the
// JavaScript client (hotline.js, a dependency-free ES module with automatic
// fallback from WebSocket to long polling and ajax polling), the chat page
// and the live dashboard.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the pages: / (chat), /dashboard, /hotline.js and the
// assets they use. Everything else under / is 404.
func Handler() http.Handler {
	files, _ := fs.Sub(static, "static") // the directory is embedded
	fileServer := http.FileServerFS(files)
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, files, name)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page("index.html"))
	mux.HandleFunc("GET /dashboard", page("dashboard.html"))
	mux.HandleFunc("GET /hotline.js", page("hotline.js"))
	mux.Handle("GET /assets/", http.StripPrefix("/assets", fileServer))
	return mux
}
