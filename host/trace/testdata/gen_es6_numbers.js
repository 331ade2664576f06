// Regenerate es6_numbers.txt with: node gen_es6_numbers.js > es6_numbers.txt
// Generates hex,JSON.stringify(x) lines from the ECMAScript engine of node.
const buf = new DataView(new ArrayBuffer(8));
let seed = 0x2545F491n;
function rnd64() { // xorshift64*
  seed ^= seed >> 12n; seed ^= (seed << 25n) & 0xffffffffffffffffn; seed ^= seed >> 27n;
  return (seed * 0x2545F4914F6CDD1Dn) & 0xffffffffffffffffn;
}
const out = [];
function emit(x) {
  buf.setFloat64(0, x);
  const hex = buf.getBigUint64(0).toString(16).padStart(16, '0');
  out.push(hex + ',' + JSON.stringify(x));
}
for (let i = 0; i < 4000; i++) {
  const bits = rnd64();
  buf.setBigUint64(0, bits);
  const x = buf.getFloat64(0);
  if (!Number.isFinite(x)) continue;
  emit(x);
}
for (let i = 0; i < 1500; i++) { // short decimals across magnitudes
  const digits = Number(rnd64() % 100000n);
  const exp = Number(rnd64() % 60n) - 30;
  emit(Number(digits + 'e' + exp));
  emit(-Number(digits + 'e' + exp) / 7);
}
for (let e = -330; e <= 310; e++) { // powers of ten and their neighbours
  const x = Number('1e' + e);
  if (!Number.isFinite(x) || x === 0) continue;
  emit(x);
  buf.setFloat64(0, x); const b = buf.getBigUint64(0);
  for (const d of [-1n, 1n]) { buf.setBigUint64(0, b + d); const y = buf.getFloat64(0); if (Number.isFinite(y)) emit(y); }
}
for (let i = 0; i < 500; i++) emit(Number(rnd64() % 9007199254740993n) * (i % 2 ? 1 : -1));
process.stdout.write(out.join('\n') + '\n');
