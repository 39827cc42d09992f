/**
 * The types that check a `parmap(fn, items, options)` call (and `parmap.filter`, `parmap.flatMap`,
 * and the same on a pool) against `fn`'s parameters, and give its results. No runtime code.
 *
 * The signature has one type parameter per input: the item type (from `items`), `star`, `kwstar`,
 * `onError`, `args`, `context` and `kwargs` (from the options), and `Params`, fn's parameter list.
 * - When fn's parameters are annotated, `Params` is inferred from fn, and each input is checked
 *   against the part of `Params` it fills ({@link ItemSlot}, {@link ArgsSlot}, ...), so an error
 *   points at the input that does not fit, and a misspelt `kwargs` key is caught as in any object
 *   literal.
 * - When they are not, `Params` has nothing to be inferred from and takes its default,
 *   {@link ProvidedParams}: what the inputs provide. That is what gives `(x) => x * 2` its `number`.
 * - The arity is checked at `fn` ({@link CheckedFunction}): fn may not require more arguments than
 *   parmap passes, which catches `Array.map`'s `(x, i) => ...`.
 *
 * These types need TypeScript 5.0 or later (`const` type parameters).
 */
import type { ParmapError } from '../errors.js';
import type { StageKind } from '../job.js';
import type { ParmapResult } from '../scheduler/result.js';
import type { FunctionFromModule, ParmapOptions } from './options.js';
import type { Pipeline, StepOptions } from './pipeline.js';

// ---------------------------------------------------------------------------------------------
// Inference helpers

/**
 * The type of a parameter from which TypeScript infers `Source`, but against which it checks the
 * argument as `Expected`. The condition cannot be resolved while `Source` is being inferred (so the
 * argument is inferred into `Source`, and `Expected` is not inferred from); once `Source` is known
 * it resolves to `Expected` (bar an empty input, whose `never` passes as it is).
 */
export type Checked<Source, Expected> = [Source] extends [never] ? Source : NotInferred<Expected>;

/**
 * `T`, where TypeScript does not infer `T`'s type parameters from: the index stays unresolved until
 * `T` is known. Unlike the built-in `NoInfer`, it shows as plain `T` in error messages.
 */
type NotInferred<T> = [T][T extends unknown ? 0 : never];

/**
 * `never` for any actual `star` value. While `star` is still being inferred (it comes after the
 * items), this reads as a tuple, and a tuple among the items' expected types makes TypeScript infer
 * `[[1, 'a']]` as `[number, string][]` rather than `(string | number)[][]`, so that `star` and
 * `kwstar` items give an unannotated fn the right parameter types.
 */
type TupleHint<Star> = [Star] extends [boolean] ? never : readonly [never];

/** An option that was not given (the default of its type parameter). */
export interface NotGiven {
  readonly 'parmap:not-given': never;
}

/** Shows an intersection of object types as one object type in messages. */
type Simplify<T> = { [Key in keyof T]: T[Key] } & {};

// ---------------------------------------------------------------------------------------------
// The layout of fn's arguments

/**
 * How items become arguments: `fn(item)`, `fn(...item)`, `fn(arg, kw)` from `[arg, kw]`, or
 * `fn(...args, kw)` from `[args, kw]`. `'unknown'` when `star` or `kwstar` is a `boolean` known only
 * at run time: then nothing is checked.
 */
type Mode = 'plain' | 'star' | 'kwstar' | 'star-kwstar' | 'unknown';

/** The mode given by the types of `star` and `kwstar`: a `boolean` is not known until run time. */
type ModeOf<Star, KwStar> = boolean extends Star
  ? 'unknown'
  : boolean extends KwStar
    ? 'unknown'
    : Star extends true
      ? KwStar extends true
        ? 'star-kwstar'
        : 'star'
      : KwStar extends true
        ? 'kwstar'
        : 'plain';

/** What the options of one call say about fn's arguments. */
export interface Layout {
  readonly mode: Mode;
  /** The `args` option's type (`[]` when not given). */
  readonly args: readonly unknown[];
  /** The `context` option's type, or {@link NotGiven}. */
  readonly context: unknown;
  /** The `kwargs` option's type, or {@link NotGiven}. */
  readonly kwargs: unknown;
}

/** The layout given by the types inferred from a call's options. */
export interface LayoutOf<Star, KwStar, Args extends readonly unknown[], Context, Kwargs> extends Layout {
  readonly mode: ModeOf<Star, KwStar>;
  readonly args: Args;
  readonly context: Context;
  readonly kwargs: Kwargs;
}

/** Whether each item is `[arg, kw]` (or `[args, kw]`). */
type IsKwStar<L extends Layout> = L['mode'] extends 'kwstar' | 'star-kwstar' ? true : false;

/** What fn receives from `context`: the awaited value of the function; `unknown` from a module. */
type ContextValue<Context> = Context extends () => infer Value ? Awaited<Value> : unknown;

/** The context argument, when `context` is given. */
type ContextArg<Context> = [Context] extends [NotGiven | undefined] ? [] : [context: ContextValue<Context>];

/** The arguments after the item's own and before the options object: `args`, then the context value. */
type Middle<L extends Layout> = [...L['args'], ...ContextArg<L['context']>];

/** Whether fn gets an options object last: with `kwstar`, or when `kwargs` is given. */
type HasKw<L extends Layout> =
  IsKwStar<L> extends true ? true : [L['kwargs']] extends [NotGiven | undefined] ? false : true;

/** Stand-ins for every argument after the item's own (only their number matters). */
type Trailing<L extends Layout> = HasKw<L> extends true ? [...Middle<L>, unknown] : Middle<L>;

/** `{ ...kwargs, ...kw }`: the object fn receives with `kwstar`. */
type Merged<Kwargs, Kw> = [Kwargs] extends [NotGiven | undefined] ? Kw : Simplify<Omit<Kwargs, keyof Kw> & Kw>;

/**
 * Parameters of any types, for a call whose layout is only known at run time: an unannotated fn's
 * parameters are then `any`, as in a plain JavaScript call.
 */
// biome-ignore lint/suspicious/noExplicitAny: nothing is known of these arguments; unknown would reject correct code.
type AnyParams = any[];

/**
 * What parmap passes fn for an item of type `Item`: the parameters an unannotated fn gets, and the
 * default of `Params`.
 */
export type ProvidedParams<Item, L extends Layout> = L['mode'] extends 'plain'
  ? [item: Item, ...Middle<L>, ...KwargsArg<L>]
  : L['mode'] extends 'star'
    ? [...(Item extends readonly unknown[] ? Item : unknown[]), ...Middle<L>, ...KwargsArg<L>]
    : L['mode'] extends 'kwstar'
      ? Item extends readonly [infer Arg, infer Kw]
        ? [item: Arg, ...Middle<L>, kw: Merged<L['kwargs'], Kw>]
        : AnyParams
      : L['mode'] extends 'star-kwstar'
        ? Item extends readonly [infer Args extends readonly unknown[], infer Kw]
          ? [...Args, ...Middle<L>, kw: Merged<L['kwargs'], Kw>]
          : AnyParams
        : AnyParams;

/** The options object argument, when there is one (its type is `kwargs`'s). */
type KwargsArg<L extends Layout> = HasKw<L> extends true ? [kw: L['kwargs']] : [];

// ---------------------------------------------------------------------------------------------
// Tuple arithmetic on fn's parameter list

/** A tuple of `N` unknowns. */
type Tuple<N extends number, Built extends unknown[] = []> = Built['length'] extends N
  ? Built
  : Tuple<N, [...Built, unknown]>;

/**
 * A tuple's length as a number type: `number` when it has a rest element, and for `never` (which
 * TypeScript can pass while it infers a nested generic call), where recursion on it would not end.
 */
type Count<T extends readonly unknown[]> = [T] extends [never]
  ? number
  : T extends { readonly length: infer N extends number }
    ? N
    : number;

/** `Params` without its first `N` elements. */
type Drop<
  Params extends readonly unknown[],
  N extends number,
  Dropped extends unknown[] = [],
> = Dropped['length'] extends N
  ? Params
  : Params extends readonly [unknown?, ...infer Rest]
    ? Drop<Rest, N, [...Dropped, unknown]>
    : Params;

/** `Params` without its last `N` elements (a fixed-length list; others come back whole). */
type DropLast<
  Params extends readonly unknown[],
  N extends number,
  Dropped extends unknown[] = [],
> = Dropped['length'] extends N
  ? Params
  : Params extends readonly [...infer Head, unknown]
    ? DropLast<Head, N, [...Dropped, unknown]>
    : Params;

/** The last `N` elements of a fixed-length list; `unknown[]` for other lists. */
type TakeLast<
  Params extends readonly unknown[],
  N extends number,
  Taken extends unknown[] = [],
> = Taken['length'] extends N
  ? []
  : Params extends readonly [...infer Head, infer Last]
    ? [...TakeLast<Head, N, [...Taken, unknown]>, Last]
    : unknown[];

/** The first `N` elements' types; `unknown` past the end, where fn ignores what it is passed. */
type Take<Params extends readonly unknown[], N extends number, Taken extends unknown[] = []> = Taken['length'] extends N
  ? Taken
  : Params extends readonly [(infer Next)?, ...infer Rest]
    ? Take<Rest, N, [...Taken, Next]>
    : Take<[], N, [...Taken, unknown]>;

/** The first element's type; `unknown` for an empty list. */
type First<Params extends readonly unknown[]> = Params extends readonly [] ? unknown : Params[0];

/** The type of the parameter at position `N`; `unknown` past the end. */
type ParamAt<Params extends readonly unknown[], N extends number> = First<Drop<Params, N>>;

/** The parameters fn cannot do without. */
type RequiredParams<Params extends readonly unknown[]> = Params extends readonly [infer Next, ...infer Rest]
  ? [Next, ...RequiredParams<Rest>]
  : [];

/** Whether a function with parameters `Params` can be called with `N` arguments. */
type Accepts<Params extends readonly unknown[], N extends number> = number extends N
  ? true
  : Tuple<N> extends [...Tuple<Count<RequiredParams<Params>>>, ...unknown[]]
    ? true
    : false;

/**
 * fn's first `N` parameters, names kept where it can: the function parmap calls, as an arity error
 * shows it.
 */
type FirstParams<Params extends readonly unknown[], N extends number> =
  number extends Count<Params> ? Take<Params, N> : DropLast<Required<Params>, Count<Drop<Required<Params>, N>>>;

// ---------------------------------------------------------------------------------------------
// What each input must be, given fn's parameters

/**
 * fn's parameters after those the item fills. With `star`, an item fills all those before the
 * trailing ones, counted from the end (optional ones included: a shorter item would shift `args`
 * into them).
 */
type AfterItem<Params extends readonly unknown[], L extends Layout> = L['mode'] extends 'plain' | 'kwstar'
  ? Drop<Params, 1>
  : L['mode'] extends 'star' | 'star-kwstar'
    ? Count<Trailing<L>> extends 0
      ? []
      : TakeLast<Required<Params>, Count<Trailing<L>>>
    : unknown[];

/** With `star`: the parameters an item fills, as a tuple the item must match. */
type ItemParams<Params extends readonly unknown[], L extends Layout> = Readonly<
  Count<Trailing<L>> extends 0 ? Params : DropLast<Required<Params>, Count<Trailing<L>>>
>;

/** The options object parameter's type. */
type KwSlot<Params extends readonly unknown[], L extends Layout> = ParamAt<AfterItem<Params, L>, Count<Middle<L>>>;

/** Any options object, for fn that takes none (or takes any). */
type AnyKw = NonNullable<ParmapOptions['kwargs']>;

/**
 * An item's `kw` with `kwstar`: the options parameter's type, less the keys `kwargs` gives, which
 * the item may leave out. Any object when fn takes none.
 */
type ItemKwSlot<Params extends readonly unknown[], L extends Layout> =
  unknown extends KwSlot<Params, L>
    ? AnyKw
    : [L['kwargs']] extends [NotGiven | undefined]
      ? NonNullable<KwSlot<Params, L>>
      : PartlyGiven<NonNullable<KwSlot<Params, L>>, keyof L['kwargs']>;

/** `Kw` with the keys in `Given` optional. */
type PartlyGiven<Kw, Given extends PropertyKey> = Simplify<Omit<Kw, Given> & Partial<Pick<Kw, Given & keyof Kw>>>;

/** What each item must be. */
export type ItemSlot<Params extends readonly unknown[], L extends Layout> = L['mode'] extends 'plain'
  ? ParamAt<Params, 0>
  : L['mode'] extends 'star'
    ? ItemParams<Params, L>
    : L['mode'] extends 'kwstar'
      ? readonly [ParamAt<Params, 0>, ItemKwSlot<Params, L>]
      : L['mode'] extends 'star-kwstar'
        ? readonly [ItemParams<Params, L>, ItemKwSlot<Params, L>]
        : unknown;

/** What `args` must be: the parameters after the item's. Unchecked when its length is not known. */
export type ArgsSlot<Params extends readonly unknown[], L extends Layout> =
  number extends Count<L['args']> ? readonly unknown[] : Readonly<Take<AfterItem<Params, L>, Count<L['args']>>>;

/** What `context` must make: the parameter after `args`. */
export type ContextSlot<Params extends readonly unknown[], L extends Layout> = ParamAt<
  AfterItem<Params, L>,
  Count<L['args']>
>;

/** What `kwargs` must be: the options parameter, or part of it with `kwstar`. Any object when fn takes none. */
export type KwargsSlot<Params extends readonly unknown[], L extends Layout> =
  unknown extends KwSlot<Params, L> ? AnyKw : IsKwStar<L> extends true ? Partial<KwSlot<Params, L>> : KwSlot<Params, L>;

/**
 * The type of `fn` (besides a function from a module): a function taking `Params` and returning
 * `Result`. When fn requires more arguments than parmap passes (as `(x, i) => ...` from `Array.map`
 * does), it is the function parmap calls, so that the error says "Target signature provides too few
 * arguments".
 */
export type CheckedFunction<Params extends readonly unknown[], Result, L extends Layout> = L['mode'] extends
  | 'plain'
  | 'kwstar'
  ? Accepts<Params, Count<[unknown, ...Trailing<L>]>> extends true
    ? (...args: Params) => Result
    : (...args: FirstParams<Params, Count<[unknown, ...Trailing<L>]>>) => Result
  : (...args: Params) => Result;

/**
 * What `items` may be. The readonly array is there for error messages: against it, a mistake in an
 * array literal is reported at the item.
 */
export type Items<T> = readonly T[] | Iterable<T> | AsyncIterable<T>;

/** The type of one item: inferred as `Item`, checked against fn's parameters. */
export type ItemParam<Item, Params extends readonly unknown[], L extends Layout, Star> =
  | Checked<Item, ItemSlot<Params, L>>
  | TupleHint<Star>;

/** A `context` function: returns (or resolves to) the value fn receives. */
type ContextMaker<Value> = () => Value | PromiseLike<Value>;

/** A `teardown` function: receives the context value. */
type Teardown<Context> =
  unknown extends ContextValue<Context> ? (value: never) => unknown : (value: ContextValue<Context>) => unknown;

/** The options whose types depend on fn (each inferred as a type parameter of the call). */
type LayoutKeys = 'star' | 'kwstar' | 'onError' | 'args' | 'context' | 'teardown' | 'kwargs';

/** The options of one call: `Base`'s, with those that lay out fn's arguments checked against fn. */
export type CallOptions<
  Base,
  Params extends readonly unknown[],
  Star,
  KwStar,
  OnError,
  Args extends readonly unknown[],
  Context,
  Kwargs,
> = Omit<Base, LayoutKeys> & {
  readonly star?: Star;
  readonly kwstar?: KwStar;
  readonly onError?: OnError;
  readonly args?: Checked<Args, ArgsSlot<Params, LayoutOf<Star, KwStar, Args, Context, Kwargs>>>;
  readonly context?:
    | Checked<Context, ContextMaker<ContextSlot<Params, LayoutOf<Star, KwStar, Args, Context, Kwargs>>>>
    | FunctionFromModule;
  readonly teardown?: NotInferred<Teardown<Context>> | FunctionFromModule;
  readonly kwargs?: Checked<Kwargs, KwargsSlot<Params, LayoutOf<Star, KwStar, Args, Context, Kwargs>>>;
};

/**
 * The results: fn's awaited return values, and with `onError: 'return'` the errors in their place.
 * Options whose `onError` is not known to be `'return'` (a variable typed `ParmapOptions`) give the
 * plain results: code that writes `onError: 'return'` says so where it calls.
 */
export type CallResult<Result, OnError> = [OnError] extends ['return']
  ? Awaited<Result> | ParmapError
  : Awaited<Result>;

/** What `filter` gives: the items themselves, and with `onError: 'return'` the errors of failed ones. */
export type FilterResult<Item, OnError> = [OnError] extends ['return'] ? Item | ParmapError : Item;

/**
 * One element of what `flatMap` gives for a result of type `Result`: an array's element, a Map's
 * `[key, value]` entry, a Set's value; any other result is one element itself.
 */
export type FlatElement<Result> =
  Result extends ReadonlyArray<infer Element>
    ? Element
    : Result extends ReadonlyMap<infer Key, infer Value>
      ? [Key, Value]
      : Result extends ReadonlySet<infer Element>
        ? Element
        : Result;

/** What a call of stage `Stage` gives for fn's results of type `Result` on items of type `Item`. */
export type StageResult<Stage extends StageKind, Item, Result, OnError> = Stage extends 'filter'
  ? FilterResult<Item, OnError>
  : Stage extends 'flatMap'
    ? CallResult<FlatElement<Awaited<Result>>, OnError>
    : CallResult<Result, OnError>;

/**
 * A call of one stage (`map`, `filter` or `flatMap`), type-checked against fn's parameters, with
 * the options `Base` (parmap's, or those of a pool's calls).
 *
 * @typeParam Item - An item, as `items` yields it.
 * @typeParam Result - What `fn` returns (awaited in the results).
 * @typeParam Params - `fn`'s parameters: from `fn` when they are annotated, otherwise what parmap passes.
 */
export type StageCall<Base, Stage extends StageKind> = <
  Item,
  Result,
  Star extends boolean = false,
  KwStar extends boolean = false,
  OnError extends Exclude<ParmapOptions['onError'], undefined> = 'throw',
  const Args extends readonly unknown[] = [],
  Context = NotGiven,
  Kwargs = NotGiven,
  Params extends readonly unknown[] = ProvidedParams<Item, LayoutOf<Star, KwStar, Args, Context, Kwargs>>,
>(
  fn: CheckedFunction<Params, Result, LayoutOf<Star, KwStar, Args, Context, Kwargs>> | FunctionFromModule,
  items: Items<ItemParam<Item, Params, LayoutOf<Star, KwStar, Args, Context, Kwargs>, Star>>,
  options?: CallOptions<Base, Params, Star, KwStar, OnError, Args, Context, Kwargs>,
) => ParmapResult<StageResult<Stage, Item, Result, OnError>>;

/**
 * What a pipeline step reads: a chain of items of type `T`. Checked against the chain a step is
 * called on (its `this`), so an annotated fn whose parameter does not take the chain's items is an
 * error at the step.
 */
export interface StepInput<T> {
  [Symbol.asyncIterator](): AsyncIterator<T>;
}

/**
 * A `map`, `filter` or `flatMap` step of a {@link Pipeline} whose items are `Item`: the same
 * checks as {@link StageCall}, with the chain's items in place of `items`, and a chain of the
 * step's results in place of a result.
 */
export type StepCall<Item, Stage extends StageKind> = <
  Result,
  Star extends boolean = false,
  KwStar extends boolean = false,
  OnError extends Exclude<ParmapOptions['onError'], undefined> = 'throw',
  const Args extends readonly unknown[] = [],
  Context = NotGiven,
  Kwargs = NotGiven,
  Params extends readonly unknown[] = ProvidedParams<Item, LayoutOf<Star, KwStar, Args, Context, Kwargs>>,
>(
  this: StepInput<NotInferred<ItemSlot<Params, LayoutOf<Star, KwStar, Args, Context, Kwargs>>>>,
  fn: CheckedFunction<Params, Result, LayoutOf<Star, KwStar, Args, Context, Kwargs>> | FunctionFromModule,
  options?: CallOptions<StepOptions, Params, Star, KwStar, OnError, Args, Context, Kwargs>,
) => Pipeline<StageResult<Stage, Item, Result, OnError>>;
