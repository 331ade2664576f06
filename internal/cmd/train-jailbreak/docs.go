package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/internal/jailbreak"
)

// The model is trained on prompts, and prompts-train.jsonl holds no documents: pasted
// READMEs, changelogs, configuration and code. Scored as prompts they looked like the
// long, markdown-heavy jailbreaks of the training file — 54 % of the chunks of real
// Markdown documents below were flagged under default — so a user asking for a summary
// of a changelog was blocked. The model also trains on benign documents: the Markdown
// files (READMEs, changelogs, guides) of the modules go.mod requires, as `go mod download
// -json` fetches them into the module cache (go.sum pins their bytes, so the set is the
// same on every machine for a given go.mod and go.sum), and a sample of their Go source
// files (goFiles). Half of the files
// (by a hash of module path, version and file path) are trained on, the other half only
// measured, as "benign documents (held-out half)" in METRICS.md. They are not used to
// calibrate the thresholds, which stay those of benign prompts.

// Bounds of the document set.
const (
	docMinFile    = 1 << 10 // smaller files are mostly badges and links
	docChunk      = 1500    // a chunk ends at the paragraph that takes it past this
	docMinChunk   = 300     // shorter chunks are dropped
	docMaxChunk   = 4000    // a chunk of one huge paragraph is cut here
	docMaxPerFile = 12      // chunks taken from one file
)

// Docs is the benign document set: the training half, the held-out half and the sha256
// of every chunk in order.
type Docs struct {
	Train, HeldOut []jailbreak.Example
	SHA256         string
	Files          int
}

type goModule struct {
	Path, Version, Dir string
}

// benignDocs collects the document set from the modules the go.mod of the module at
// root requires, downloading those missing from the module cache.
func benignDocs(root string) (Docs, error) {
	cmd := exec.Command("go", "mod", "download", "-json")
	cmd.Dir = root
	// The module's own go.mod decides the set, not a go.work above the repository.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// The modules it could not fetch say why in their JSON, on stdout.
		var why []string
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var m struct{ Path, Version, Error string }
			if dec.Decode(&m) != nil {
				break
			}
			if m.Error != "" {
				why = append(why, m.Path+"@"+m.Version+": "+m.Error)
			}
		}
		return Docs{}, fmt.Errorf("go mod download -json: %v: %s", err, strings.TrimSpace(stderr.String()+" "+strings.Join(why, "; ")))
	}
	var mods []goModule
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m goModule
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return Docs{}, fmt.Errorf("go mod download -json: %w", err)
		}
		if m.Dir == "" {
			return Docs{}, fmt.Errorf("go mod download -json: module %s@%s has no directory", m.Path, m.Version)
		}
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path+"@"+mods[i].Version < mods[j].Path+"@"+mods[j].Version })
	var d Docs
	h := sha256.New()
	for _, m := range mods {
		files, err := markdownFiles(m.Dir)
		if err != nil {
			return Docs{}, err
		}
		code, err := goFiles(m.Dir, m.Path+"@"+m.Version)
		if err != nil {
			return Docs{}, err
		}
		files = append(files, code...)
		for _, rel := range files {
			b, err := os.ReadFile(filepath.Join(m.Dir, filepath.FromSlash(rel)))
			if err != nil {
				return Docs{}, err
			}
			id := m.Path + "@" + m.Version + "/" + rel
			held := sha256.Sum256([]byte(id))[0]%2 == 1
			d.Files++
			for _, c := range docChunks(string(b)) {
				fmt.Fprintf(h, "%s\x00%s\x00", id, c)
				e := jailbreak.Example{Text: c, Label: jailbreak.LabelBenign, Source: id}
				if held {
					d.HeldOut = append(d.HeldOut, e)
				} else {
					d.Train = append(d.Train, e)
				}
			}
		}
	}
	d.SHA256 = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// markdownFiles lists the .md files of a module directory, in its root and up to three
// directories down (see moduleFiles).
func markdownFiles(dir string) ([]string, error) {
	return moduleFiles(dir, 3, func(rel string) bool { return strings.EqualFold(path.Ext(rel), ".md") })
}

// goCodeShare is the share of a module's Go source files (tests and generated protobuf
// code aside) taken as documents: 1 in goCodeShare, by sha256 of module, version and path
// (so the same file name is not taken in every module or in none).
const goCodeShare = 40

// goFiles lists a sample of the Go source files of a module directory (see goCodeShare and
// moduleFiles). People paste code into prompts ("why does this panic?"); a model that
// knows prompts only, and injections planted in code comments, took code itself for a
// sign of an attack.
func goFiles(dir, module string) ([]string, error) {
	return moduleFiles(dir, -1, func(rel string) bool {
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || strings.HasSuffix(rel, ".pb.go") {
			return false
		}
		h := sha256.Sum256([]byte(module + "/" + rel))
		return binary.BigEndian.Uint64(h[:8])%goCodeShare == 0
	})
}

// moduleFiles lists the files of a module directory that keep accepts, of at least
// docMinFile bytes, in directories fewer than maxDepth levels down (any when maxDepth is
// negative), test data, vendored code and hidden directories aside, as slash-separated
// paths sorted as such: the order, which training follows, is then the same on every
// system ("doc/x.md" before "doc1.md", with '\' as well as '/').
func moduleFiles(dir string, maxDepth int, keep func(rel string) bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			deep := maxDepth >= 0 && strings.Count(rel, string(filepath.Separator)) >= maxDepth
			if rel != "." && (deep || e.Name() == "testdata" || e.Name() == "vendor" || strings.HasPrefix(e.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		rel = filepath.ToSlash(rel)
		if !keep(rel) {
			return nil
		}
		if info, err := e.Info(); err != nil || info.Size() < docMinFile {
			return err
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// docChunks cuts a document into chunks of whole paragraphs of about docChunk bytes.
func docChunks(text string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() >= docMinChunk {
			out = append(out, clip.Prefix(cur.String(), docMaxChunk))
		}
		cur.Reset()
	}
	for _, para := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		if cur.Len()+len(para) > docChunk && cur.Len() >= docMinChunk {
			flush()
		}
		if cur.Len() > 0 {
			cur.WriteString("\n\n")
		}
		cur.WriteString(para)
		if len(out) >= docMaxPerFile {
			return out
		}
	}
	flush()
	if len(out) > docMaxPerFile {
		out = out[:docMaxPerFile]
	}
	return out
}
