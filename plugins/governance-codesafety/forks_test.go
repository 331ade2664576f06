package main

import "testing"

// TestForkBombs checks that process exhaustion is reported as destructive (malicious):
// os.fork() in a loop that never ends or in a function that calls itself without a way
// out (its children fork too), processes started in an endless loop that neither waits
// nor is left, and the shell's fork bomb in a command; and that forking servers,
// supervisors that wait, bounded forks and a pool are not.
func TestForkBombs(t *testing.T) {
	checkExemptions(t, []exemptionCase{
		{"while True: os.fork()", "import os\nwhile True:\n    os.fork()\n", "codesafety.destructive", 3},
		{"while 1 with the error ignored", "import os\nwhile 1:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "codesafety.destructive", 4},
		{"left only on an error", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        break\n", "codesafety.destructive", 4},
		{"from os import fork", "from os import fork\nRUN = True\nwhile RUN:\n    fork()\n", "codesafety.destructive", 4},
		{"fork by a computed name", "import os\nwhile True:\n    getattr(os, 'fo' + 'rk')()\n", "codesafety.destructive", 3},
		{"itertools.count", "import os, itertools\nfor _ in itertools.count():\n    os.fork()\n", "codesafety.destructive", 3},
		{"for of 64 rounds", "import os\nfor _ in range(64):\n    os.fork()\n", "codesafety.destructive", 3},
		{"recursion", "import os\ndef bomb():\n    os.fork()\n    bomb()\nbomb()\n", "codesafety.destructive", 3},
		{"multiprocessing in while True", "import multiprocessing\ndef f():\n    pass\nwhile True:\n    multiprocessing.Process(target=f).start()\n", "codesafety.destructive", 5},
		{"Process spawning itself", "from multiprocessing import Process\ndef f():\n    while True:\n        p = Process(target=f)\n        p.start()\nf()\n", "codesafety.destructive", 4},
		{"Popen without waiting", "import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '100'])\n", "codesafety.destructive", 3},
		{"shell fork bomb", "import subprocess\nsubprocess.run(':(){ :|:& };:', shell=True)\n", "codesafety.destructive", 2},
		{"shell fork bomb, spaced and named", "import os\nos.system('bomb() { bomb | bomb & }; bomb')\n", "codesafety.destructive", 2},
		{"shell fork bomb in an argv", "import subprocess\nsubprocess.run(['bash', '-c', ':(){ :|: & };:'])\n", "codesafety.destructive", 2},
		{"perl fork bomb", "import subprocess\nsubprocess.run(['perl', '-e', 'fork while fork'])\n", "codesafety.destructive", 2},
		// Not bombs: the child leaves, the loop waits or ends, the recursion has a base case.
		{"forking server", "import os, socket\ns = socket.socket()\ns.bind(('127.0.0.1', 8000))\ns.listen()\nwhile True:\n    conn, addr = s.accept()\n    if os.fork() == 0:\n        conn.sendall(b'hi')\n        os._exit(0)\n    conn.close()\n", "", 0},
		{"child exits in a function", "import os, sys\ndef child():\n    print('child')\n    sys.exit(0)\nwhile True:\n    pid = os.fork()\n    if pid == 0:\n        child()\n    os.waitpid(pid, 0)\n", "", 0},
		{"supervisor joins", "import multiprocessing\ndef work():\n    pass\nwhile True:\n    p = multiprocessing.Process(target=work)\n    p.start()\n    p.join()\n", "", 0},
		{"restarts a command it waits for", "import subprocess, time\nwhile True:\n    p = subprocess.Popen(['sleep', '1'])\n    p.wait()\n    time.sleep(1)\n", "", 0},
		{"a few forks, as taught", "import os\nfor i in range(3):\n    os.fork()\nprint(os.getpid())\n", "", 0},
		{"recursion with a base case", "import os\ndef spawn(n):\n    if n == 0:\n        return\n    os.fork()\n    spawn(n - 1)\nspawn(3)\n", "", 0},
		{"pool", "from multiprocessing import Pool\nwith Pool(4) as p:\n    print(p.map(abs, [1, -2]))\n", "", 0},
		{"fork bomb named in a deny list", "BLOCKED = [':(){ :|:& };:', 'bomb() { bomb | bomb & }; bomb']\ndef ok(cmd):\n    return cmd not in BLOCKED\n", "", 0},
	})
}
