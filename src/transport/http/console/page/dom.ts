/**
 * The few browser APIs the page uses, typed here rather than by TypeScript's "dom" lib: the
 * project is type-checked as one program whose lib is Bun's, and a `/// <reference lib="dom" />`
 * in one file would change the global types of every other (fetch bodies, streams). These are
 * structural subsets of the DOM's own interfaces, so the browser's objects satisfy them.
 */

/** The parts of an Element the page touches. */
export interface Element {
  textContent: string | null;
  className: string;
  title: string;
  setAttribute(name: string, value: string): void;
  append(...nodes: Element[]): void;
  replaceChildren(...nodes: Element[]): void;
  addEventListener(type: string, listener: (ev: Event) => void): void;
}

/** An `<input>`. */
export interface InputElement extends Element {
  value: string;
}

/** The parts of an Event the page touches. */
export interface Event {
  preventDefault(): void;
}

interface Document {
  getElementById(id: string): Element | null;
  createElement(tag: string): Element;
  readonly visibilityState: "visible" | "hidden";
}

interface Storage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

const browser = globalThis as unknown as { document: Document; sessionStorage: Storage };

/** The page's document. */
export const document: Document = browser.document;
/** Storage that lives as long as the tab: where the token is kept. */
export const sessionStorage: Storage = browser.sessionStorage;
