// Canonical schematic YAML and ID in the browser, byte-identical to imagefactory.schematic.
//
// Go's yaml.Marshal (go.yaml.in/yaml/v4, v3 defaults) for the values a schematic holds, ported
// from imagefactory/goyaml.py and goresolve.py; SHA-256 written out because WebCrypto's `subtle`
// is missing on plain-HTTP origins (a mirror on a LAN). No dependencies, synchronous.
//
// Input: the plain object with upstream's field names, as JSON.parse of a schematic gives it.
// Numbers in overlay options: integers are written as Go ints, others as Go float64 ('g', -1);
// JSON cannot tell `1.0` from `1`, so an integral float is written as an int.

const BEST_INDENT = 4;
const MAX_SIMPLE_KEY = 128;
const PLAIN = "plain", SINGLE = "single", DOUBLE = "double", LITERAL = "literal";
const BREAKS = new Set(["\r", "\n", "\x85", "\u2028", "\u2029"]);
const ESCAPES = new Map([
  [0x00, "0"], [0x07, "a"], [0x08, "b"], [0x09, "t"], [0x0a, "n"], [0x0b, "v"], [0x0c, "f"],
  [0x0d, "r"], [0x1b, "e"], [0x22, '"'], [0x5c, "\\"], [0x85, "N"], [0xa0, "_"],
  [0x2028, "L"], [0x2029, "P"],
]);

// ---- scalar resolution (goresolve.py) ---------------------------------------------------------

const STR = "!!str", NULL = "!!null", BOOL = "!!bool", INT = "!!int", FLOAT = "!!float";
const TIMESTAMP = "!!timestamp", MERGE = "!!merge";
const EXACT = new Map();
for (const [spellings, tag] of [
  [["true", "True", "TRUE", "false", "False", "FALSE"], BOOL],
  [["", "~", "null", "Null", "NULL"], NULL],
  [[".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"], FLOAT],
  [["<<"], MERGE],
]) {
  for (const s of spellings) EXACT.set(s, tag);
}
const HINT_SIGN = "+-";
const HINT_DIGIT = "0123456789";
const HINT_MAP = "yYnNtTfFoO~";
const YAML_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
const DOT_FLOAT = /^\.[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+(?:_[0-9]+)*)?$/;
const DIGITS = { 16: /^[0-9a-fA-F]+$/, 10: /^[0-9]+$/, 8: /^[0-7]*$/, 2: /^[01]+$/ };
const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

function goParseUint(s) {
  if (!s) return null;
  let base = 10, digits = s;
  if (s[0] === "0") {
    const prefix = s.slice(1, 2).toLowerCase();
    if (s.length >= 3 && "box".includes(prefix) && prefix) {
      base = { b: 2, o: 8, x: 16 }[prefix];
      digits = s.slice(2);
    } else {
      base = 8;
      digits = s.slice(1);
    }
  }
  if (!DIGITS[base].test(digits)) return null;
  const prefix = { 2: "0b", 8: "0o", 10: "", 16: "0x" }[base];
  const value = digits ? BigInt(prefix + digits) : 0n;
  return value <= UINT64_MAX ? value : null;
}

function goParseInt(s) {
  const negative = s[0] === "-";
  const body = s && HINT_SIGN.includes(s[0]) ? s.slice(1) : s;
  const magnitude = goParseUint(body);
  if (magnitude === null) return null;
  const value = negative ? -magnitude : magnitude;
  return value >= INT64_MIN && value <= INT64_MAX ? value : null;
}

const finite = (text) => Number.isFinite(Number(text));

const TS_DATE = "([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})";
const TS_TIME = "([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[.,]([0-9]+))?";
const TS_ZONED = new RegExp(`^${TS_DATE}[Tt]${TS_TIME}(Z|[+-][0-9][0-9]:[0-9][0-9])$`);
const TS_SPACED = new RegExp(`^${TS_DATE} +${TS_TIME}$`);
const TS_DATE_ONLY = new RegExp(`^${TS_DATE}$`);
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isTimestamp(s) {
  if (s.length < 5 || !/^[0-9]{4}-/.test(s)) return false;
  let m, zone = "Z", y, mo, d, h = 0, mi = 0, se = 0;
  if ((m = TS_ZONED.exec(s))) {
    [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
    zone = m[8];
  } else if ((m = TS_SPACED.exec(s))) {
    [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
  } else if ((m = TS_DATE_ONLY.exec(s))) {
    [y, mo, d] = m.slice(1, 4).map(Number);
  } else {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1) return false;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = mo === 2 && leap ? 29 : DAYS[mo - 1];
  if (d > days || h >= 24 || mi >= 60 || se >= 60) return false;
  return !(zone !== "Z" && (Number(zone.slice(1, 3)) > 24 || Number(zone.slice(4, 6)) > 60));
}

function resolvedTag(text) {
  if (!text) return NULL;
  const first = text[0];
  if (!HINT_DIGIT.includes(first) && !HINT_SIGN.includes(first)) {
    if (HINT_MAP.includes(first) || first === ".") {
      if (EXACT.has(text)) return EXACT.get(text);
      if (first === "." && DOT_FLOAT.test(text) && finite(text.replaceAll("_", ""))) return FLOAT;
    } else if (text === "<<") {
      return MERGE;
    }
    return STR;
  }
  if (EXACT.has(text)) return EXACT.get(text);
  if (isTimestamp(text)) return TIMESTAMP;
  const plain = text.replaceAll("_", "");
  let number = goParseInt(plain);
  if (number === null && !(plain && HINT_SIGN.includes(plain[0]))) number = goParseUint(plain);
  if (number !== null) return INT;
  if (YAML_FLOAT.test(plain) && finite(plain)) return FLOAT;
  return STR;
}

const OLD_BOOLS = new Set(["y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
  "n", "N", "no", "No", "NO", "off", "Off", "OFF"]);
const BASE60 = /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/;
const isBase60 = (s) => s.includes(":") && BASE60.test(s);

// ---- scalar style (goyaml.py _analyze, represent_string, _plan) -------------------------------

function printable(c) {
  return c === 0x0a || (c >= 0x20 && c <= 0x7e) || (c >= 0xa0 && c <= 0xd7ff) ||
    (c >= 0xe000 && c <= 0xfffd && c !== 0xfeff);
}

const codePoints = (s) => Array.from(s);
const utf8Length = (s) => new TextEncoder().encode(s).length;

function analyze(value) {
  if (!value) return { multiline: false, blockPlain: true, singleQuoted: true, block: false };
  const chars = codePoints(value);
  let blockIndicators = value.startsWith("---") || value.startsWith("...");
  let lineBreaks = false, special = false, tabs = false;
  let leadingSpace = false, leadingBreak = false, trailingSpace = false, trailingBreak = false;
  let breakSpace = false, spaceBreak = false, previousSpace = false, previousBreak = false;
  let precededByWs = true;
  const last = chars.length - 1;
  chars.forEach((ch, i) => {
    const followedByWs = i === last || chars[i + 1] === " " || chars[i + 1] === "\t";
    if (i === 0) {
      if ("#,[]{}&*!|>'\"%@`".includes(ch)) blockIndicators = true;
      else if (ch === "?" || ch === ":" || ch === "-") blockIndicators = blockIndicators || followedByWs;
    } else if ((ch === ":" && followedByWs) || (ch === "#" && precededByWs)) {
      blockIndicators = true;
    }
    if (ch === "\t") tabs = true;
    else if (!printable(ch.codePointAt(0))) special = true;
    if (ch === " ") {
      leadingSpace = leadingSpace || i === 0;
      trailingSpace = trailingSpace || i === last;
      breakSpace = breakSpace || previousBreak;
      previousSpace = true;
      previousBreak = false;
    } else if (BREAKS.has(ch)) {
      lineBreaks = true;
      leadingBreak = leadingBreak || i === 0;
      trailingBreak = trailingBreak || i === last;
      spaceBreak = spaceBreak || previousSpace;
      previousSpace = false;
      previousBreak = true;
    } else {
      previousSpace = previousBreak = false;
    }
    precededByWs = ch === " " || ch === "\t" || ch === "\x00" || BREAKS.has(ch);
  });
  const blockPlain = !(leadingSpace || leadingBreak || trailingSpace || trailingBreak ||
    breakSpace || spaceBreak || tabs || special || lineBreaks || blockIndicators);
  return {
    multiline: lineBreaks,
    blockPlain,
    singleQuoted: !(breakSpace || spaceBreak || tabs || special),
    block: !(trailingSpace || spaceBreak || special),
  };
}

// Python's str.isspace, which goyaml.py's literal rule uses.
const SPACE = /^[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;

function shouldUseLiteral(s) {
  const chars = codePoints(s);
  return chars.length >= 2 && chars.some((ch) => !SPACE.test(ch));
}

function representString(s) {
  if (s.includes("\n")) return shouldUseLiteral(s) ? LITERAL : DOUBLE;
  if (OLD_BOOLS.has(s) || isBase60(s) || s === "<<") return SINGLE;
  return resolvedTag(s) === STR ? PLAIN : DOUBLE;
}

function escape(code) {
  if (ESCAPES.has(code)) return ESCAPES.get(code);
  const hex = code.toString(16).toUpperCase();
  if (code <= 0xff) return "x" + hex.padStart(2, "0");
  if (code <= 0xffff) return "u" + hex.padStart(4, "0");
  return "U" + hex.padStart(8, "0");
}

function plan(text, asKey) {
  if (/[\ud800-\udfff]/u.test(text)) throw new TypeError("string is not valid unicode");
  let style = representString(text);
  const info = analyze(text);
  const simple = asKey && !info.multiline && utf8Length(text) <= MAX_SIMPLE_KEY;
  if (simple && info.multiline) style = DOUBLE;
  if (style === PLAIN && (!info.blockPlain || (!text && simple))) style = SINGLE;
  if (style === SINGLE && !info.singleQuoted) style = DOUBLE;
  if (style === LITERAL && (!info.block || simple)) style = DOUBLE;
  let body = "";
  if (style === PLAIN) {
    body = text;
  } else if (style === DOUBLE) {
    const escapeAll = text.startsWith("\ufeff");
    body = '"' + codePoints(text).map((ch) => {
      const code = ch.codePointAt(0);
      return escapeAll || BREAKS.has(ch) || ch === '"' || ch === "\\" || !printable(code)
        ? "\\" + escape(code) : ch;
    }).join("") + '"';
  } else if (style === SINGLE && !codePoints(text).some((ch) => BREAKS.has(ch))) {
    body = "'" + text.replaceAll("'", "''") + "'";
  }
  return { text, style, body, simpleKey: simple };
}

// ---- numbers (goresolve.py format_float) ------------------------------------------------------

function formatFloat(value) {
  if (Number.isNaN(value)) return ".nan";
  if (!Number.isFinite(value)) return value > 0 ? ".inf" : "-.inf";
  if (value === 0) return Object.is(value, -0) ? "-0" : "0";
  const sign = value < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "").replace(/0+$/, "");
  const exp = Number(exponent);
  const point = exp + 1;
  if (exp < -4 || exp >= 6) {
    const head = digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "");
    return `${sign}${head}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function representOther(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    return Number.isInteger(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER
      ? String(value) : formatFloat(value);
  }
  throw new TypeError(`cannot marshal ${typeof value}`);
}

// ---- map key order (goyaml.py _string_less) ---------------------------------------------------

const isDigit = (ch) => /^\p{Nd}$/u.test(ch);
const isLetter = (ch) => /^\p{L}$/u.test(ch);
const wrap64 = (n) => BigInt.asIntN(64, n);

function stringLess(a, b) {
  const as = codePoints(a), bs = codePoints(b);
  let digits = false;
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const ca = as[i], cb = bs[i];
    if (ca === cb) {
      digits = isDigit(ca);
      continue;
    }
    const al = isLetter(ca), bl = isLetter(cb);
    if (al && bl) return ca.codePointAt(0) < cb.codePointAt(0);
    if (al || bl) return digits ? al : bl;
    let an = 0n, bn = 0n;
    if (ca === "0" || cb === "0") {
      for (let j = i - 1; j >= 0 && isDigit(as[j]); j--) {
        if (as[j] !== "0") {
          an = bn = 1n;
          break;
        }
      }
    }
    let ai = i;
    for (; ai < as.length && isDigit(as[ai]); ai++) {
      an = wrap64(an * 10n + BigInt(as[ai].codePointAt(0) - 48));
    }
    let bi = i;
    for (; bi < bs.length && isDigit(bs[bi]); bi++) {
      bn = wrap64(bn * 10n + BigInt(bs[bi].codePointAt(0) - 48));
    }
    if (an !== bn) return an < bn;
    if (ai !== bi) return ai < bi;
    return ca.codePointAt(0) < cb.codePointAt(0);
  }
  return as.length < bs.length;
}

function sortedKeys(keys) {
  return [...keys].sort((a, b) => (stringLess(a, b) ? -1 : stringLess(b, a) ? 1 : 0));
}

// ---- emitter (goyaml.py _Emitter) -------------------------------------------------------------

class Struct {
  constructor(fields) {
    this.fields = fields;
  }
}

class Emitter {
  constructor() {
    this.out = [];
    this.column = 0;
    this.whitespace = true;
    this.indention = true;
    this.indent = -1;
  }

  put(text) {
    this.out.push(text);
    this.column += codePoints(text).length;
  }

  putBreak() {
    this.out.push("\n");
    this.column = 0;
    this.indention = true;
  }

  writeBreak(ch) {
    if (ch === "\n") {
      this.putBreak();
    } else {
      this.out.push(ch);
      this.column = 0;
      this.indention = true;
    }
  }

  writeIndent() {
    const indent = this.indent > 0 ? this.indent : 0;
    if (!this.indention || this.column > indent || (this.column === indent && !this.whitespace)) {
      this.out.push("\n");
      this.column = 0;
      this.indention = true;
    }
    if (this.column < indent) {
      this.out.push(" ".repeat(indent - this.column));
      this.column = indent;
    }
    this.whitespace = true;
  }

  indicator(text, needWs, isWs, isIndention) {
    if (needWs && !this.whitespace) this.put(" ");
    this.put(text);
    this.whitespace = isWs;
    this.indention = this.indention && isIndention;
  }

  nestedIndent(flow, inSequenceItem) {
    if (this.indent < 0) return flow ? BEST_INDENT : 0;
    if (inSequenceItem) return this.indent + 2;
    return BEST_INDENT * Math.floor((this.indent + BEST_INDENT) / BEST_INDENT);
  }

  node(value, inSequenceItem) {
    if (value instanceof Struct) this.mapping(value.fields, inSequenceItem);
    else if (Array.isArray(value)) this.sequence(value, inSequenceItem);
    else if (value !== null && typeof value === "object") {
      this.mapping(sortedKeys(Object.keys(value)).map((k) => [k, value[k]]), inSequenceItem);
    } else this.scalar(value, inSequenceItem, false);
  }

  mapping(items, inSequenceItem) {
    if (!items.length) {
      this.indicator("{", true, true, false);
      this.indicator("}", false, false, false);
      return;
    }
    const outer = this.indent;
    this.indent = this.nestedIndent(false, inSequenceItem);
    for (const [key, value] of items) {
      this.writeIndent();
      if (plan(key, true).simpleKey) {
        this.scalar(key, false, true);
        this.indicator(":", false, false, false);
      } else {
        this.indicator("?", true, false, true);
        this.scalar(key, false, false);
        this.writeIndent();
        this.indicator(":", true, false, true);
      }
      this.node(value, false);
    }
    this.indent = outer;
  }

  sequence(items, inSequenceItem) {
    if (!items.length) {
      this.indicator("[", true, true, false);
      this.indicator("]", false, false, false);
      return;
    }
    const outer = this.indent;
    this.indent = this.nestedIndent(false, inSequenceItem);
    for (const item of items) {
      this.writeIndent();
      this.indicator("-", true, false, true);
      this.node(item, true);
    }
    this.indent = outer;
  }

  scalar(value, inSequenceItem, asKey) {
    if (typeof value !== "string") {
      this.plain(representOther(value));
      return;
    }
    const p = plan(value, asKey);
    if (p.body) {
      if (p.style === PLAIN) {
        this.plain(p.body);
        return;
      }
      if (!this.whitespace) this.put(" ");
      this.put(p.body);
      this.whitespace = false;
      this.indention = false;
      return;
    }
    const outer = this.indent;
    this.indent = this.nestedIndent(true, inSequenceItem);
    if (p.style === PLAIN) this.plain(p.text);
    else if (p.style === SINGLE) this.singleQuoted(p.text);
    else this.literal(p.text);
    this.indent = outer;
  }

  plain(text) {
    if (text) {
      if (!this.whitespace) this.put(" ");
      this.put(text);
      this.whitespace = false;
    }
    this.indention = false;
  }

  singleQuoted(text) {
    this.indicator("'", true, false, false);
    let breaks = false;
    for (const ch of text) {
      if (BREAKS.has(ch)) {
        if (!breaks && ch === "\n") this.putBreak();
        this.writeBreak(ch);
        breaks = true;
        continue;
      }
      if (breaks) this.writeIndent();
      this.put(ch === "'" ? "''" : ch);
      this.indention = false;
      breaks = false;
    }
    this.indicator("'", false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  literal(text) {
    const chars = codePoints(text);
    const lastChar = chars[chars.length - 1];
    this.indicator("|", true, false, false);
    if (chars[0] === " ") this.indicator(String(BEST_INDENT), false, false, false);
    if (!BREAKS.has(lastChar)) this.indicator("-", false, false, false);
    else if (chars.length === 1 || BREAKS.has(chars[chars.length - 2])) {
      this.indicator("+", false, false, false);
    }
    this.putBreak();
    this.whitespace = true;
    let breaks = true;
    for (const ch of chars) {
      if (BREAKS.has(ch)) {
        this.writeBreak(ch);
        breaks = true;
        continue;
      }
      if (breaks) this.writeIndent();
      this.put(ch);
      this.indention = false;
      breaks = false;
    }
  }
}

// ---- the schematic (schematic.py to_go) -------------------------------------------------------

const BOOTLOADERS = new Set(["dual-boot", "sd-boot", "grub"]);

function fields(...items) {
  return new Struct(items.filter(([, , keep]) => keep).map(([name, value]) => [name, value]));
}

function toGo(s) {
  const o = s.overlay || {};
  const cu = s.customization || {};
  const options = o.options || {};
  const hasOptions = Object.keys(options).length > 0;
  const args = cu.extraKernelArgs || [];
  const meta = (cu.meta || []).map((m) => new Struct([["key", m.key ?? 0], ["value", m.value ?? ""]]));
  const extensions = (cu.systemExtensions || {}).officialExtensions || [];
  const bootloader = String(cu.bootloader || "").toLowerCase();
  if (bootloader && bootloader !== "none" && !BOOTLOADERS.has(bootloader)) {
    throw new TypeError(`${cu.bootloader} does not belong to BootloaderKind values`);
  }
  const sb = cu.secureboot || {};
  const sector = (cu.diskImage || {}).sectorSize || 0;
  return fields(
    ["owner", s.owner || "", Boolean(s.owner)],
    ["overlay", fields(["image", o.image || "", true], ["name", o.name || "", true],
      ["options", options, hasOptions]), Boolean(o.image || o.name || hasOptions)],
    ["customization", fields(
      ["embeddedMachineConfiguration", cu.embeddedMachineConfiguration || "",
        Boolean(cu.embeddedMachineConfiguration)],
      ["extraKernelArgs", args, args.length > 0],
      ["meta", meta, meta.length > 0],
      ["systemExtensions", fields(["officialExtensions", extensions, true]), extensions.length > 0],
      ["bootloader", bootloader, Boolean(bootloader) && bootloader !== "none"],
      ["secureboot", fields(["enrollKeys", sb.enrollKeys || "", Boolean(sb.enrollKeys)],
        ["includeWellKnownCertificates", true, Boolean(sb.includeWellKnownCertificates)]),
      Boolean(sb.enrollKeys || sb.includeWellKnownCertificates)],
      ["diskImage", fields(["sectorSize", sector, true]), sector !== 0],
    ), true],
  );
}

export function canonicalYAML(schematic) {
  const emitter = new Emitter();
  emitter.node(toGo(schematic), false);
  emitter.writeIndent();
  return emitter.out.join("");
}

// ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------------

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export function sha256Hex(bytes) {
  const length = bytes.length;
  const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length << 3) >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0;
      d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  return Array.from(h, (x) => x.toString(16).padStart(8, "0")).join("");
}

export function schematicID(schematic) {
  return sha256Hex(new TextEncoder().encode(canonicalYAML(schematic)));
}
