/**
 * The free variables of a program parsed by acorn (ESTree): the references that no scope around
 * them resolves. It is a port of the few rules of eslint-scope that parmap used: loading that
 * package (with estraverse and esrecurse) and its first analysis cost a program's first call
 * several milliseconds, more than this whole module does. The tests compare the two on thousands of
 * functions, so what it returns, in what order, and which references only write, are eslint-scope's.
 *
 * How a reference is resolved, as eslint-scope does it:
 * - each scope keeps the references made in it that are not resolved yet, in the order they are
 *   met; when the scope ends it resolves those whose name it declares and hands the others to
 *   the scope around it. A declaration anywhere in a scope counts (hoisting, and the temporal dead
 *   zone, do not change which variable a name means);
 * - `var` declarations go to the nearest function, class field initializer, static block, module
 *   or program; `let`, `const`, `using`, classes and function declarations stay in their block;
 * - a scope whose function calls `eval()` resolves nothing (eval could declare any name), nor
 *   does any scope around it: its references become free when it ends. `declaredAround` says
 *   which of them a scope around declares after all.
 */

/** An acorn node; its other fields are read by name. */
export interface AstNode {
  readonly type: string;
  readonly start: number;
  readonly end: number;
  readonly [key: string]: unknown;
}

export type Identifier = AstNode & { readonly name: string };

/** A scope: the names declared in it, and the references left to resolve while it is open. */
export interface Scope {
  readonly upper: Scope | undefined;
  /** Where `var` declarations made in this scope go. */
  readonly variableScope: Scope;
  readonly names: Set<string>;
  readonly kind: 'global' | 'with' | 'function' | 'other';
  /** For a function: its parameters' names, and where its body starts (see `resolves`). */
  readonly params: Set<string>;
  readonly bodyStart: number;
  /** Set when a direct `eval()` call is met inside it. */
  dynamic: boolean;
  readonly left: Reference[];
}

/** One use of a name. */
export interface Reference {
  readonly identifier: Identifier;
  /** Assigned and not read (`x = 1`, `[x] = list`, `for (x of list)`); `x += 1` reads too. */
  readonly writeOnly: boolean;
  /** The scope the reference is made in. */
  readonly from: Scope;
}

interface Walk {
  scope: Scope;
  readonly through: Reference[];
}

type Visitor = (node: AstNode, walk: Walk) => void;

/**
 * The references of `program` that no scope resolves, in eslint-scope's order. A `script` has one
 * scope at the top; a `module` has a module scope inside it, which decides whether a top-level
 * declaration is resolved when a function calls `eval()`.
 */
export function unresolvedReferences(program: AstNode, sourceType: 'module' | 'script'): Reference[] {
  const walk: Walk = { scope: newScope(undefined, 'global', true), through: [] };
  if (sourceType === 'module') walk.scope = newScope(walk.scope, 'other', true);
  visitAll(program.body, walk);
  while (walk.scope.upper !== undefined) close(walk);
  close(walk);
  return walk.through;
}

/**
 * Whether a scope around the reference declares its name: what an unresolved reference inside a
 * function that calls `eval()` still sees. A parameter's default sees the other parameters and
 * `arguments`, not the body's variables: `(a = b) => { var b }` reads the `b` around the function.
 */
export function declaredAround(reference: Reference): boolean {
  const { name } = reference.identifier;
  for (let scope: Scope | undefined = reference.from; scope !== undefined; scope = scope.upper) {
    if (name === 'arguments' ? scope.names.has(name) : resolves(scope, reference)) return true;
  }
  return false;
}

function newScope(upper: Scope | undefined, kind: Scope['kind'], holdsVar: boolean, bodyStart = -1): Scope {
  const scope = {
    upper,
    names: new Set<string>(),
    kind,
    params: new Set<string>(),
    bodyStart,
    dynamic: false,
    left: [],
  } as unknown as { variableScope: Scope } & Scope;
  scope.variableScope = holdsVar || upper === undefined ? scope : upper.variableScope;
  return scope;
}

function open(walk: Walk, kind: Scope['kind'] = 'other', holdsVar = false, bodyStart = -1): void {
  walk.scope = newScope(walk.scope, kind, holdsVar, bodyStart);
}

/** Ends the current scope: resolves what it can, hands the rest on (or out, if eval is about). */
function close(walk: Walk): void {
  const { scope, through } = walk;
  const upper = scope.upper;
  for (const reference of scope.left) {
    if (scope.kind === 'with') upper?.left.push(reference);
    else if (scope.dynamic && scope.kind !== 'global') through.push(reference);
    else if (resolves(scope, reference)) continue;
    else if (upper === undefined) through.push(reference);
    else upper.left.push(reference);
  }
  walk.scope = upper ?? scope;
}

/**
 * Whether `scope` resolves the reference. A parameter's default (`(a = b) => { var b }`) cannot
 * see the function body's declarations, nor its `arguments`: only the other parameters.
 */
function resolves(scope: Scope, reference: Reference): boolean {
  const { name, start } = reference.identifier;
  if (!scope.names.has(name)) return false;
  return scope.kind !== 'function' || start >= scope.bodyStart || scope.params.has(name);
}

const READ = false;
const WRITE = true;

function reference(walk: Walk, node: AstNode | null, writeOnly: boolean): void {
  if (node?.type === 'Identifier')
    walk.scope.left.push({ identifier: node as Identifier, writeOnly, from: walk.scope });
}

function visit(node: unknown, walk: Walk): void {
  if (!isNode(node)) return;
  const visitor = VISITORS[node.type];
  if (visitor !== undefined) visitor(node, walk);
  else visitChildren(node, walk);
}

function visitAll(nodes: unknown, walk: Walk): void {
  for (const node of nodes as unknown[]) visit(node, walk);
}

/** The children of a node without a visitor of its own, in estraverse's order (else the node's). */
function visitChildren(node: AstNode, walk: Walk): void {
  for (const key of CHILD_KEYS[node.type] ?? Object.keys(node)) {
    const child = node[key];
    if (Array.isArray(child)) visitAll(child, walk);
    else visit(child, walk);
  }
}

// estraverse's keys where the order matters (acorn sets a SwitchCase's `consequent` before its
// `test`). ImportExpression's `options` is read too, which estraverse misses: a name used in
// `import(x, { with: { type } })` must be found like any other.
const CHILD_KEYS: Readonly<Record<string, readonly string[]>> = {
  SwitchCase: ['test', 'consequent'],
  TemplateLiteral: ['quasis', 'expressions'],
  TaggedTemplateExpression: ['tag', 'quasi'],
  ImportExpression: ['source', 'options'],
  ConditionalExpression: ['test', 'consequent', 'alternate'],
  IfStatement: ['test', 'consequent', 'alternate'],
  TryStatement: ['block', 'handler', 'finalizer'],
  DoWhileStatement: ['body', 'test'],
  WhileStatement: ['test', 'body'],
  CallExpression: ['callee', 'arguments'],
  NewExpression: ['callee', 'arguments'],
  ForStatement: ['init', 'test', 'update', 'body'],
  ExportNamedDeclaration: ['declaration', 'specifiers'],
};

function isNode(value: unknown): value is AstNode {
  return typeof value === 'object' && value !== null && typeof (value as AstNode).type === 'string';
}

const nothing: Visitor = () => undefined;

// What is not a reference: labels, private names (`#x`), `this`, `super`, `new.target`,
// `import.meta`, and non-computed member and property names.
const VISITORS: Readonly<Record<string, Visitor>> = {
  Identifier: (node, walk) => reference(walk, node, READ),
  PrivateIdentifier: nothing,
  MetaProperty: nothing,
  BreakStatement: nothing,
  ContinueStatement: nothing,
  LabeledStatement: (node, walk) => visit(node.body, walk),
  MemberExpression: (node, walk) => {
    visit(node.object, walk);
    if (node.computed) visit(node.property, walk);
  },
  Property: visitProperty,
  MethodDefinition: visitProperty,
  PropertyDefinition: visitField,
  StaticBlock: (node, walk) => inScope(walk, 'other', true, () => visitAll(node.body, walk)),
  ClassDeclaration: visitClass,
  ClassExpression: visitClass,
  FunctionDeclaration: visitFunction,
  FunctionExpression: visitFunction,
  ArrowFunctionExpression: visitFunction,
  BlockStatement: (node, walk) => inScope(walk, 'other', false, () => visitAll(node.body, walk)),
  CatchClause: visitCatch,
  SwitchStatement: (node, walk) => {
    visit(node.discriminant, walk);
    inScope(walk, 'other', false, () => visitAll(node.cases, walk));
  },
  WithStatement: (node, walk) => {
    visit(node.object, walk);
    inScope(walk, 'with', false, () => visit(node.body, walk));
  },
  ForStatement: (node, walk) => inForScope(node.init, walk, () => visitChildren(node, walk)),
  ForInStatement: visitForIn,
  ForOfStatement: visitForIn,
  VariableDeclaration: visitDeclaration,
  AssignmentExpression: visitAssignment,
  UpdateExpression: (node, walk) => {
    if (isNode(node.argument) && node.argument.type === 'Identifier') reference(walk, node.argument, READ);
    else visitChildren(node, walk);
  },
  CallExpression: (node, walk) => {
    const callee = node.callee as AstNode;
    if (callee.type === 'Identifier' && callee.name === 'eval') markEval(walk.scope.variableScope);
    visitChildren(node, walk);
  },
  ImportDeclaration: (node, walk) => {
    for (const specifier of node.specifiers as AstNode[]) declare(walk.scope, specifier.local);
  },
  ExportAllDeclaration: nothing,
  ExportNamedDeclaration: (node, walk) => {
    if (!isNode(node.source)) visitChildren(node, walk);
  },
  ExportDefaultDeclaration: (node, walk) => visit(node.declaration, walk),
  ExportSpecifier: (node, walk) => visit(node.local, walk),
};

function inScope(walk: Walk, kind: Scope['kind'], holdsVar: boolean, body: () => void): void {
  open(walk, kind, holdsVar);
  body();
  close(walk);
}

/** `for (let ...; ...)`, `for (const x of ...)`: the head has a scope of its own; `var` has not. */
function inForScope(head: unknown, walk: Walk, body: () => void): void {
  const scoped = isNode(head) && head.type === 'VariableDeclaration' && head.kind !== 'var';
  if (scoped) open(walk);
  body();
  if (scoped) close(walk);
}

/** A direct `eval()` leaves the function it is in, and every scope around it, unable to resolve. */
function markEval(scope: Scope): void {
  for (let each: Scope | undefined = scope; each !== undefined; each = each.upper) each.dynamic = true;
}

function declare(scope: Scope, node: unknown): void {
  if (isNode(node) && node.type === 'Identifier') scope.names.add(node.name as string);
}

/** An object literal's property or a class method: only a computed key is an expression. */
function visitProperty(node: AstNode, walk: Walk): void {
  if (node.computed) visit(node.key, walk);
  visit(node.value, walk);
}

/** A class field: its initializer runs as a function of its own would, with its own `var` scope. */
function visitField(node: AstNode, walk: Walk): void {
  if (node.computed) visit(node.key, walk);
  if (isNode(node.value)) inScope(walk, 'other', true, () => visit(node.value, walk));
}

/** A class's name is declared around it (a declaration) and inside it, where `extends` is read. */
function visitClass(node: AstNode, walk: Walk): void {
  if (node.type === 'ClassDeclaration') declare(walk.scope, node.id);
  inScope(walk, 'other', false, () => {
    declare(walk.scope, node.id);
    visit(node.superClass, walk);
    visit(node.body, walk);
  });
}

/**
 * A function: a declaration's name belongs to the block around it, a function expression's own
 * name to a scope of its own around the function. Parameters, `arguments` (not for arrows) and
 * the body's declarations share one scope; a body is no block scope of its own.
 */
function visitFunction(node: AstNode, walk: Walk): void {
  if (node.type === 'FunctionDeclaration') declare(walk.scope, node.id);
  const named = node.type === 'FunctionExpression' && isNode(node.id);
  if (named) {
    open(walk);
    declare(walk.scope, node.id);
  }
  const body = node.body as AstNode;
  open(walk, 'function', true, body.start);
  const scope = walk.scope;
  if (node.type !== 'ArrowFunctionExpression') scope.names.add('arguments');
  for (const param of node.params as AstNode[]) {
    bindPattern(param, walk, (name, defaults) => {
      scope.names.add(name.name);
      scope.params.add(name.name);
      for (let each = 0; each < defaults; each++) reference(walk, name, WRITE);
    });
  }
  if (body.type === 'BlockStatement') visitAll(body.body, walk);
  else visit(body, walk);
  close(walk);
  if (named) close(walk);
}

function visitCatch(node: AstNode, walk: Walk): void {
  inScope(walk, 'other', false, () => {
    bindPattern(node.param, walk, (name, defaults) => {
      walk.scope.names.add(name.name);
      for (let each = 0; each < defaults; each++) reference(walk, name, WRITE);
    });
    visit(node.body, walk);
  });
}

/** `var`, `let`, `const`, `using`: each name is written by its initializer, and by its defaults. */
function visitDeclaration(node: AstNode, walk: Walk): void {
  const target = node.kind === 'var' ? walk.scope.variableScope : walk.scope;
  for (const declarator of node.declarations as AstNode[]) {
    bindPattern(declarator.id, walk, (name, defaults) => {
      target.names.add(name.name);
      for (let each = 0; each < defaults; each++) reference(walk, name, WRITE);
      if (isNode(declarator.init)) reference(walk, name, WRITE);
    });
    visit(declarator.init, walk);
  }
}

/** `for (x of list)` assigns x; `for (const x of list)` declares it, in the head's own scope. */
function visitForIn(node: AstNode, walk: Walk): void {
  const left = node.left as AstNode;
  inForScope(left, walk, () => {
    if (left.type === 'VariableDeclaration') {
      visit(left, walk);
      const [declarator] = left.declarations as AstNode[];
      bindPattern(declarator?.id, undefined, (name) => reference(walk, name, WRITE));
    } else {
      bindPattern(left, walk, (name, defaults) => assigned(walk, name, defaults, WRITE));
    }
    visit(node.right, walk);
    visit(node.body, walk);
  });
}

/** `x = 1` and `[x, y] = pair` only write; `x += 1` and `x ||= 1` read x too. */
function visitAssignment(node: AstNode, walk: Walk): void {
  const left = node.left as AstNode;
  if (!PATTERNS.has(left.type)) visit(left, walk);
  else if (node.operator === '=') bindPattern(left, walk, (name, defaults) => assigned(walk, name, defaults, WRITE));
  else reference(walk, left, READ);
  visit(node.right, walk);
}

function assigned(walk: Walk, name: Identifier, defaults: number, writeOnly: boolean): void {
  for (let each = 0; each <= defaults; each++) reference(walk, name, writeOnly);
}

const PATTERNS = new Set(['Identifier', 'ObjectPattern', 'ArrayPattern', 'RestElement', 'AssignmentPattern']);

/**
 * Calls `onName` for each name a pattern binds or assigns, with how many defaults (`= value`) it
 * is inside; then, if given a walk, visits the expressions in the pattern (defaults, computed
 * keys, and the objects of member targets such as `[obj.x] = pair`), after all the names.
 */
function bindPattern(
  pattern: unknown,
  walk: Walk | undefined,
  onName: (name: Identifier, defaults: number) => void,
): void {
  const expressions: unknown[] = [];
  const names = (node: unknown, defaults: number): void => {
    if (!isNode(node)) return;
    if (node.type === 'Identifier') onName(node as Identifier, defaults);
    else if (node.type === 'ObjectPattern') for (const each of node.properties as AstNode[]) names(each, defaults);
    else if (node.type === 'ArrayPattern') for (const each of node.elements as unknown[]) names(each, defaults);
    else if (node.type === 'RestElement') names(node.argument, defaults);
    else if (node.type === 'AssignmentPattern') {
      names(node.left, defaults + 1);
      expressions.push(node.right);
    } else if (node.type === 'Property') {
      if (node.computed) expressions.push(node.key);
      names(node.value, defaults);
    } else if (node.type === 'MemberExpression') {
      if (node.computed) expressions.push(node.property);
      expressions.push(node.object);
    }
  };
  names(pattern, 0);
  if (walk !== undefined) visitAll(expressions, walk);
}
