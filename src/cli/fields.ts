// FIELD=VALUE arguments of create/update commands, checked against the fields the API documents.
import { UsageError } from './args.js';

export type FieldType = 'int' | 'bool' | 'str' | 'dow';
/** clearable: `FIELD=` (empty) in an update sets it back to unset (null: unlimited, none). */
export interface FieldSpec { name: string; type: FieldType; required?: boolean; clearable?: boolean }

export function fieldList(specs: FieldSpec[]): string {
  return specs.map((f) => `${f.name}${f.required ? '*' : ''}`).join(' ');
}

/** The help line for `FIELD=` in updates (empty when nothing can be cleared). */
export function clearHelp(specs: FieldSpec[], what: Record<string, string> = {}): string {
  const c = specs.filter((f) => f.clearable);
  if (!c.length) return '';
  return `FIELD= (nothing after =) clears an optional field: ${c.map((f) => what[f.name] ? `${f.name}= (${what[f.name]})` : `${f.name}=`).join(', ')}`;
}

/**
 * Parses ["a=1", "b=x"] against specs; `secret` names are refused (they would sit in argv).
 * With `clear` (updates), `a=` of a clearable field gives null: the client sends it as cleared.
 */
export function parseFields(args: string[], specs: FieldSpec[], opts: { secret?: string[]; requireAll?: boolean; clear?: boolean } = {}): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  const byName = new Map(specs.map((s) => [s.name, s]));
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected FIELD=VALUE, got '${a}' (fields: ${fieldList(specs)})`);
    const k = a.slice(0, eq);
    const v = a.slice(eq + 1);
    if (opts.secret?.includes(k)) throw new UsageError(`${k} never goes on the command line (it would be visible in the process list): use --new-password-file FILE`);
    const spec = byName.get(k);
    if (!spec) throw new UsageError(`unknown field '${k}' (fields: ${fieldList(specs)})`);
    if (k in out) throw new UsageError(`field '${k}' given twice`);
    if (v === '') {
      const can = specs.filter((s) => s.clearable).map((s) => s.name);
      if (opts.clear && spec.clearable) { out[k] = null; continue; }
      throw new UsageError(opts.clear
        ? `${k} cannot be cleared${can.length ? ` (FIELD= clears only ${can.join(', ')})` : ''}; give a value`
        : `${k} needs a value (leave the field out to use the default)`);
    }
    switch (spec.type) {
      case 'int':
        if (!/^-?\d+$/.test(v)) throw new UsageError(`${k} must be a whole number, not '${v}'`);
        out[k] = Number(v);
        break;
      case 'bool': {
        const t = v.toLowerCase();
        if (['true', 'yes', '1', 'on'].includes(t)) out[k] = true;
        else if (['false', 'no', '0', 'off'].includes(t)) out[k] = false;
        else throw new UsageError(`${k} must be true or false, not '${v}'`);
        break;
      }
      case 'dow':
        if (!/^\[?\s*[0-6](\s*,\s*[0-6])*\s*\]?$/.test(v)) throw new UsageError(`${k} must be a list of days 0-6 (0=Monday), e.g. [0,1,2]`);
        out[k] = v.startsWith('[') ? v : `[${v}]`;
        break;
      default:
        out[k] = v;
    }
  }
  if (opts.requireAll !== false) {
    const missing = specs.filter((s) => s.required && !(s.name in out)).map((s) => s.name);
    if (missing.length) throw new UsageError(`missing field(s): ${missing.join(', ')} (fields: ${fieldList(specs)}; * = required)`);
  }
  return out;
}
