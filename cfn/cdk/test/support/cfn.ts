// Reads CloudFormation templates (cfn/tasker.yaml with its short-form tags, or a synthesized
// one) and evaluates them for given parameter values into one comparable form.
import * as fs from 'fs';
import * as path from 'path';
import * as YAML from 'yaml';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Template = { [key: string]: any };

/** The repository's tasker template (cfn/tasker.yaml), parsed. */
export const TASKER_YAML = path.resolve(__dirname, '..', '..', '..', '..', 'tasker.yaml');

const INTRINSICS = ['If', 'Not', 'Equals', 'And', 'Or', 'Join', 'Select', 'Split', 'FindInMap', 'Sub', 'GetAtt',
  'Base64', 'ImportValue', 'GetAZs', 'Cidr', 'Length', 'ToJsonString'];

function customTags(): YAML.Tags {
  const tags: YAML.Tags = [
    { tag: '!Ref', resolve: (value: string) => ({ Ref: value }) },
    { tag: '!Condition', resolve: (value: string) => ({ Condition: value }) },
  ];
  for (const name of INTRINSICS) {
    const key = `Fn::${name}`;
    tags.push({ tag: `!${name}`, resolve: (value: string) => ({ [key]: name === 'GetAtt' ? value.split('.') : value }) });
    for (const collection of ['seq', 'map'] as const) {
      tags.push({ tag: `!${name}`, collection, resolve: (node: any) => ({ [key]: node.toJSON() }) } as any);
    }
  }
  return tags;
}

export function readYamlTemplate(file: string): Template {
  return YAML.parse(fs.readFileSync(file, 'utf8'), { customTags: customTags() });
}

const NO_VALUE = Symbol('AWS::NoValue');

/**
 * Evaluates a template for `parameters` (over its defaults): conditions decided, Ref of a
 * parameter replaced by its value, and every reference that stays symbolic written as a
 * placeholder string ("${AWS::Region}", "${Key.Arn}"), so that Fn::Sub, Fn::Join and Fn::GetAtt
 * spelling the same value read the same. `rename` maps logical ids to the names to compare.
 * Returns the resources that exist, each with its Condition name (if any) kept aside.
 */
export function evaluate(
  template: Template,
  parameters: Record<string, string>,
  rename: (logicalId: string) => string = (id) => id,
): Map<string, { condition?: string; resource: Template }> {
  const values: Record<string, string> = {};
  for (const [name, declaration] of Object.entries<any>(template.Parameters ?? {})) {
    if (declaration.Default !== undefined) values[name] = String(declaration.Default);
  }
  Object.assign(values, parameters);
  const types: Record<string, string> = {};
  for (const [id, resource] of Object.entries<any>(template.Resources)) types[id] = resource.Type;

  const conditions: Record<string, boolean> = {};
  const condition = (name: string): boolean => {
    if (!(name in conditions)) conditions[name] = truth(value(template.Conditions[name]));
    return conditions[name];
  };
  const truth = (v: any): boolean => {
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw new Error(`not a condition value: ${JSON.stringify(v)}`);
  };
  // A Ref or GetAtt that stays symbolic. A Lambda function's or KMS key's Ref names the same
  // thing as its Arn wherever the templates use it (FunctionName, KmsMasterKeyId), so both read
  // as the Arn.
  const reference = (id: string, attribute?: string): string => {
    if (id.startsWith('AWS::')) return `\${${id}}`;
    if (!(id in types)) throw new Error(`reference to unknown ${id}`);
    const arnLike = types[id] === 'AWS::Lambda::Function' || types[id] === 'AWS::KMS::Key';
    const attr = attribute ?? (arnLike ? 'Arn' : undefined);
    return attr ? `\${${rename(id)}.${attr}}` : `\${${rename(id)}}`;
  };
  // Fn::Sub's placeholders: its own variables first, then parameters, then references.
  const substitute = (text: string, variables: Record<string, any> = {}): string =>
    text.replace(/\$\{([^}!]+)\}/g, (_whole, name: string) => {
      if (name in variables) return String(variables[name]);
      if (name in values) return values[name];
      const [id, attribute] = name.split('.');
      return reference(id, attribute);
    });
  const value = (node: any): any => {
    if (Array.isArray(node)) return node.map(value).filter((v) => v !== NO_VALUE);
    if (node === null || typeof node !== 'object') return node;
    const keys = Object.keys(node);
    if (keys.length === 1) {
      const [key] = keys;
      const arg = node[key];
      switch (key) {
        case 'Ref':
          if (arg === 'AWS::NoValue') return NO_VALUE;
          if (arg in values) return values[arg];
          return reference(arg);
        case 'Fn::GetAtt': {
          const [id, ...rest] = Array.isArray(arg) ? arg : String(arg).split('.');
          return reference(id, rest.join('.'));
        }
        case 'Fn::Sub':
          if (typeof arg === 'string') return substitute(arg);
          if (!Array.isArray(arg) || arg.length !== 2 || typeof arg[0] !== 'string' || typeof arg[1] !== 'object') {
            throw new Error(`Fn::Sub takes a string or [string, {variables}], not ${JSON.stringify(arg)}`);
          }
          return substitute(arg[0], value(arg[1]));
        case 'Fn::Join':
          return value(arg[1]).map(String).join(arg[0]);
        case 'Fn::If':
          return value(condition(arg[0]) ? arg[1] : arg[2]);
        case 'Fn::Equals': {
          const [a, b] = value(arg);
          return String(a) === String(b);
        }
        case 'Fn::Not':
          return !truth(value(arg[0]));
        case 'Fn::And':
          return value(arg).every(truth);
        case 'Fn::Or':
          return value(arg).some(truth);
        case 'Condition':
          return condition(arg);
      }
    }
    const out: Record<string, any> = {};
    for (const key of keys) {
      const v = value(node[key]);
      if (v !== NO_VALUE) out[key] = v;
    }
    return out;
  };

  const resources = new Map<string, { condition?: string; resource: Template }>();
  for (const [id, resource] of Object.entries<any>(template.Resources)) {
    if (resource.Condition && !condition(resource.Condition)) continue;
    const evaluated = value(resource);
    const conditionName = evaluated.Condition;
    delete evaluated.Condition;
    resources.set(rename(id), { condition: conditionName, resource: evaluated });
  }
  return resources;
}

/**
 * The form both templates are compared in: numbers and booleans as strings (CloudFormation
 * passes parameter values as strings), a one-element list in an IAM Action or Resource as its
 * element, attribute definitions sorted by name, and what differs by construction left out:
 * DependsOn and Metadata (CDK's ordering and paths) and the function's Code (parameters
 * CodeS3Bucket/CodeS3Key in the template, an asset in the construct); a dashboard's body is
 * compared as parsed JSON.
 */
export function canonical(resource: Template): Json {
  const copy = JSON.parse(JSON.stringify(resource));
  delete copy.DependsOn;
  delete copy.Metadata;
  if (copy.Type === 'AWS::Lambda::Function') delete copy.Properties.Code;
  const props = copy.Properties ?? {};
  // A dashboard's body is JSON text: compared as the JSON it parses to, not by its layout.
  if (copy.Type === 'AWS::CloudWatch::Dashboard' && typeof props.DashboardBody === 'string') {
    props.DashboardBody = JSON.parse(props.DashboardBody);
  }
  if (Array.isArray(props.AttributeDefinitions)) {
    props.AttributeDefinitions.sort((a: any, b: any) => a.AttributeName.localeCompare(b.AttributeName));
  }
  return scalarsAsStrings(unwrapSingletons(copy));
}

function unwrapSingletons(node: any): any {
  if (Array.isArray(node)) return node.map(unwrapSingletons);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, any> = {};
  for (const [key, v] of Object.entries(node)) {
    const inner = unwrapSingletons(v);
    out[key] = (key === 'Action' || key === 'Resource') && Array.isArray(inner) && inner.length === 1 ? inner[0] : inner;
  }
  return out;
}

function scalarsAsStrings(node: any): Json {
  if (Array.isArray(node)) return node.map(scalarsAsStrings);
  if (typeof node === 'number' || typeof node === 'boolean') return String(node);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, Json> = {};
  for (const [key, v] of Object.entries(node)) out[key] = scalarsAsStrings(v);
  return out;
}
