/**
 * The demo behind `npm start`: hash 1,500 passwords with PBKDF2 (the slow, salted hash that
 * password databases use), first with a plain `Array.map` and then with `parmap`, and compare.
 * The users are made up here from a seeded random generator, so every run hashes the same data.
 */
import { pbkdf2Sync } from 'node:crypto';
import { parmap } from '../dist/index.js';

const USERS = 1_500;
const ROUNDS = 20_000;

interface User {
  readonly name: string;
  readonly password: string;
  readonly salt: string;
}

/** A small deterministic generator (mulberry32), so the data set is the same on every run. */
function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeUsers(count: number): User[] {
  const random = seededRandom(2024);
  const syllables = ['ka', 'lo', 'mi', 'ra', 'te', 'zu', 'no', 'shi', 'ven', 'dor', 'an', 'el'];
  const pick = (choices: readonly string[]) => choices[Math.floor(random() * choices.length)] ?? '';
  const token = (length: number) => Array.from({ length }, () => (random() * 36).toString(36)[0]).join('');
  return Array.from({ length: count }, (_, i) => ({
    name: `${pick(syllables)}${pick(syllables)}${pick(syllables)}${i}`,
    password: token(12),
    salt: token(16),
  }));
}

/** The work: one PBKDF2-SHA256 hash, as a login service stores it. */
function hashPassword(user: User, rounds: number): string {
  const { pbkdf2Sync: pbkdf2 } = require('node:crypto') as typeof import('node:crypto');
  return `${user.name}:${pbkdf2(user.password, user.salt, rounds, 32, 'sha256').toString('hex')}`;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const users = makeUsers(USERS);
console.log(
  `Hashing ${USERS.toLocaleString('en-US')} passwords with PBKDF2-SHA256, ${ROUNDS.toLocaleString('en-US')} rounds each.\n`,
);

process.stderr.write('Array.map, one core ...\n');
let started = performance.now();
const serial = users.map(
  (user) => `${user.name}:${pbkdf2Sync(user.password, user.salt, ROUNDS, 32, 'sha256').toString('hex')}`,
);
const serialMs = performance.now() - started;
process.stderr.write(`Array.map took ${seconds(serialMs)}\n\n`);

started = performance.now();
const parallel = await parmap(hashPassword, users, { args: [ROUNDS], progress: 'parmap' });
const parallelMs = performance.now() - started;

const workers = Math.min(USERS, (await import('node:os')).availableParallelism());
const same = parallel.length === serial.length && parallel.every((hash, i) => hash === serial[i]);
const rows: [string, string][] = [
  ['items', `${USERS.toLocaleString('en-US')} passwords`],
  ['Array.map', seconds(serialMs)],
  ['parmap', seconds(parallelMs)],
  ['speed-up', `${(serialMs / parallelMs).toFixed(2)}x`],
  ['workers', String(workers)],
  ['same hashes', same ? 'yes' : 'NO'],
];
console.log(`\n${rows.map(([name, value]) => `  ${name.padEnd(12)} ${value}`).join('\n')}`);
if (!same) process.exitCode = 1;
