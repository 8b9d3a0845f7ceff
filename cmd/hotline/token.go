package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hotline-rt/hotline/auth"
)

const tokenSynopsis = `Usage: hotline token -secret S -sub USER [flags]

Mint an HS256 JWT for a server run with -jwt-secret S: for development and
tests. Production tokens come from the application's backend, which signs
the same claims:

  sub        the user id (required); sessions, presence and the per-user
             limits count by it
  name       the display name shown in presence and chat
  subscribe  channel patterns (path.Match syntax, "chat:*") the user may
             subscribe to; absent: whatever each namespace allows
  publish    channel patterns the user may publish to; absent: likewise
  exp        expiry (Unix seconds); the server ends a session whose token
             expires (close 4001) unless the client refreshes it in band

The token is printed on stdout.`

// token is "hotline token": it mints a development token.
func token(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderrOf(ctx))
	secret := fs.String("secret", "", "the server's -jwt-secret (default: $HOTLINE_JWT_SECRET, the serve flag's\nvariable)")
	sub := fs.String("sub", "", "user id (the sub claim); required")
	name := fs.String("name", "", "display name (the name claim)")
	var subscribe, publish stringList
	fs.Var(&subscribe, "subscribe", "channel pattern the user may subscribe to, e.g. 'chat:*'; repeat the flag\nor separate with commas (none: what each namespace allows)")
	fs.Var(&publish, "publish", "channel pattern the user may publish to; as -subscribe")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (the exp claim); 0: the token never expires")
	// Not parseFlags: HOTLINE_SUB or HOTLINE_NAME would be odd settings
	// for a whole shell. The secret alone comes from the environment, as
	// serve's.
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n", tokenSynopsis)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q", fs.Arg(0))
	}
	if *secret == "" {
		*secret = os.Getenv("HOTLINE_JWT_SECRET")
	}
	switch {
	case *secret == "":
		return errors.New("token: -secret is required (the server's -jwt-secret)")
	case *sub == "":
		return errors.New("token: -sub is required")
	case *ttl < 0:
		return errors.New("token: -ttl must not be negative")
	}
	if len(*secret) < 32 {
		fmt.Fprintln(stderrOf(ctx), "hotline token: warning: a secret under 32 bytes is easy to guess; fine for development only")
	}
	tok, err := auth.Sign([]byte(*secret), auth.Identity{
		UserID:    *sub,
		Name:      *name,
		Subscribe: splitAll(subscribe),
		Publish:   splitAll(publish),
	}, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdoutOf(ctx), tok)
	return nil
}

// splitAll splits each comma-separated value of a repeated flag.
func splitAll(l stringList) []string {
	var out []string
	for _, v := range l {
		out = append(out, splitList(v)...)
	}
	return out
}
