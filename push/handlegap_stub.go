package push

// HandleGap is a placeholder, added by the broker helper so that the module
// builds once broker.Handler has HandleGap: it does nothing. The engine's
// own HandleGap (SEAMS.md §1) replaces it; delete this file then.
func (hd handler) HandleGap(channel string, reason string) {}
