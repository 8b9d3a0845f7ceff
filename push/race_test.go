//go:build race

package push

// raceEnabled: the race detector allocates on its own, so allocation
// counts are checked only without it (test.sh runs them so).
const raceEnabled = true
