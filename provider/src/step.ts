/** One step of a plan: a command with optional stdin, or a whole file written atomically. */
export type Step =
  | {
      readonly summary: string;
      readonly argv: readonly string[];
      readonly stdin?: string;
      readonly okExitCodes?: readonly number[];
    }
  | {
      readonly summary: string;
      readonly writeFile: {
        readonly path: string;
        readonly content: string;
        readonly mode: number;
      };
    };
