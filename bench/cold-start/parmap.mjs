// A whole short program that uses parmap as installed (the package's entry): load it, map two items on two workers, exit.
import { parmap } from 'parmap';

const results = await parmap((x) => x, [1, 2], { n: 2 });
console.log(JSON.stringify(results));
