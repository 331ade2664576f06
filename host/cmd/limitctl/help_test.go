package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHelpCommands: limitctl help COMMAND prints what COMMAND --help does; sessions
// create's usage line names every flag it takes; verify, which reads no daemon, does not
// offer -addr or -token-file.
func TestHelpCommands(t *testing.T) {
	t.Setenv("LIMIT_ADDR", "ftp://nowhere")
	for _, args := range [][]string{{"exec"}, {"sessions", "create"}, {"verify"}, {"plugin", "check"}, {"version"}} {
		code, stdout, stderr := limitctl(t, append([]string{"help"}, args...)...)
		_, want, _ := limitctl(t, append(args, "--help")...)
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("help %q: exit %d, stdout:\n%s\nwant %s --help's:\n%s\nstderr: %s", args, code, stdout, args, want, stderr)
		}
	}
	_, stdout, _ := limitctl(t, "sessions", "create", "--help")
	usageLine, flags, _ := strings.Cut(stdout, "flags of")
	for _, f := range []string{"-name", "-policy", "-max-concurrency", "-timeout-ms", "-runner", "-allow-network", "-owner"} {
		if !strings.Contains(flags, f) || !strings.Contains(usageLine, "-"+f) {
			t.Errorf("sessions create: %s is not both in the usage line and among the flags:\n%s", f, stdout)
		}
	}
	_, stdout, _ = limitctl(t, "verify", "--help")
	if strings.Contains(stdout, "-addr") || strings.Contains(stdout, "-token-file") || !strings.Contains(stdout, "-key") {
		t.Errorf("verify --help offers the daemon's flags, or not -key:\n%s", stdout)
	}
}

// TestUnknownCommand: a mistyped command is told in two lines, with the command likely
// meant, not answered with the whole usage; a mistyped subcommand names the one meant.
func TestUnknownCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sesions"}, "limitctl: unknown command \"sesions\"; did you mean sessions?\nlimitctl help lists the commands.\n"},
		{[]string{"bogus"}, "limitctl: unknown command \"bogus\"\nlimitctl help lists the commands.\n"},
		{[]string{"help", "tarces"}, "limitctl: unknown command \"tarces\"; did you mean traces?\nlimitctl help lists the commands.\n"},
	} {
		code, stdout, stderr := limitctl(t, c.args...)
		if code != 2 || stdout != "" || stderr != c.want {
			t.Errorf("%q: exit %d, stderr %q, want 2 with %q\nstdout: %s", c.args, code, stderr, c.want, stdout)
		}
	}
	if code, _, stderr := limitctl(t, "sessions", "craete"); code != 2 || !strings.Contains(stderr, `limitctl: unknown sessions command "craete"; did you mean create?`) {
		t.Errorf("sessions craete: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestEvaluateKindChecked: governance evaluate with a kind the API does not take is a
// usage error (exit 2) naming the kinds, before any request.
func TestEvaluateKindChecked(t *testing.T) {
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests++ }))
	defer srv.Close()
	code, _, stderr := limitctl(t, "-addr", srv.URL, "governance", "evaluate", "promt", "hi")
	if code != 2 || !strings.Contains(stderr, `limitctl: KIND must be prompt, code or output, got "promt"; did you mean prompt?`) || requests != 0 {
		t.Errorf("exit %d, %d requests, stderr:\n%s", code, requests, stderr)
	}
}

// TestCreateSessionOwner: sessions create --owner sends the API's owner.
func TestCreateSessionOwner(t *testing.T) {
	srv, created := sessionsServer(t)
	code, stdout, stderr := limitctl(t, "-addr", srv.URL, "sessions", "create", "--name", "l", "--owner", "bob")
	if code != 0 || len(*created) != 1 || (*created)[0]["owner"] != "bob" {
		t.Fatalf("exit %d, bodies %v\nstdout: %s\nstderr: %s", code, *created, stdout, stderr)
	}
}
