// The gRPC and protobuf runtimes, loaded from where @pulumi/pulumi finds them. The proto stubs
// under @pulumi/pulumi/proto require them from there; messages and services built with another
// copy (a second google-protobuf or @grpc/grpc-js in the tree) would not be the same classes.
import * as path from "node:path";
import type * as Grpc from "@grpc/grpc-js";
import type * as AnyPb from "google-protobuf/google/protobuf/any_pb";
import type * as EmptyPb from "google-protobuf/google/protobuf/empty_pb";
import type * as StructPb from "google-protobuf/google/protobuf/struct_pb";

const pulumiDir = path.dirname(require.resolve("@pulumi/pulumi/package.json"));

function fromPulumi<T>(id: string): T {
  return require(require.resolve(id, { paths: [pulumiDir] })) as T;
}

/** @grpc/grpc-js as @pulumi/pulumi's proto stubs load it. */
export const grpc = fromPulumi<typeof Grpc>("@grpc/grpc-js");
/** google.protobuf.Struct of the google-protobuf that @pulumi/pulumi uses. */
export const { Struct } = fromPulumi<typeof StructPb>("google-protobuf/google/protobuf/struct_pb");
/** google.protobuf.Any of the google-protobuf that @pulumi/pulumi uses. */
export const { Any } = fromPulumi<typeof AnyPb>("google-protobuf/google/protobuf/any_pb");
/** google.protobuf.Empty of the google-protobuf that @pulumi/pulumi uses. */
export const { Empty } = fromPulumi<typeof EmptyPb>("google-protobuf/google/protobuf/empty_pb");
