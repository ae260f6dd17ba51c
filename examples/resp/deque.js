// A list for LPUSH/RPUSH/LPOP/RPOP: a ring buffer that doubles when full, so a push or a
// pop at either end is O(1) (Array#unshift moves every element: redis-benchmark's
// 100,000 LPUSHes of one list would be quadratic).
export class Deque {
  #items = new Array(16);
  #head = 0;
  length = 0;

  push(value) {
    this.#grow();
    this.#items[(this.#head + this.length) & (this.#items.length - 1)] = value;
    this.length++;
  }

  unshift(value) {
    this.#grow();
    this.#head = (this.#head - 1) & (this.#items.length - 1);
    this.#items[this.#head] = value;
    this.length++;
  }

  shift() {
    if (this.length === 0) return null;
    const value = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.length--;
    return value;
  }

  pop() {
    if (this.length === 0) return null;
    const at = (this.#head + this.length - 1) & (this.#items.length - 1);
    const value = this.#items[at];
    this.#items[at] = undefined;
    this.length--;
    return value;
  }

  /** The element at index i (0 = the left end), for LRANGE. */
  at(i) {
    return this.#items[(this.#head + i) & (this.#items.length - 1)];
  }

  #grow() {
    if (this.length < this.#items.length) return;
    const next = new Array(this.#items.length * 2);
    for (let i = 0; i < this.length; i++) next[i] = this.at(i);
    this.#items = next;
    this.#head = 0;
  }
}
