//go:build !unix

package ws

func (*rawReader) wait() error { panic("ws: rawReader is unix only") }
