// The trivial item function, as a worker file for piscina (which needs one).
export default (x) => x + 1;
