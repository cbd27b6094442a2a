//! `FileDescriptorProto` ↔ `.proto` round trips: text → descriptor → printed text → the same
//! descriptor, and base64 descriptors (what confluent-kafka's `ProtobufSerializer` registers)
//! accepted as Protobuf schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use gatehouse_registry::schema::protobuf::ProtobufSchema;
use gatehouse_registry::schema::{Dependency, Reference, proto_print};
use prost::Message as _;

const MONEY: &str = r#"syntax = "proto3";
package acme.common;
message Money {
  string currency = 1;
  int64 units = 2;
}
"#;

const SHOP: &str = r#"syntax = "proto3";
package acme.shop.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import public "google/protobuf/any.proto";
import "common/money.proto";

option java_package = "com.acme.shop";
option java_multiple_files = true;
option go_package = "acme/shop";
option optimize_for = SPEED;

// An order.
message Order {
  option deprecated = true;
  string id = 1;
  int64 amount = 2 [deprecated = true];
  repeated int32 codes = 3 [packed = false];
  map<string, Line> lines = 4;
  oneof payment {
    string card = 5;
    bytes token = 6 [json_name = "tok"];
  }
  optional string note = 7;
  google.protobuf.Timestamp created = 8;
  google.protobuf.StringValue memo = 9;
  acme.common.Money total = 10;
  Status status = 11;
  map<int32, Status> by_code = 12;
  google.protobuf.Any extra = 13;
  reserved 20, 30 to 40, 100 to max;
  reserved "old", "older";

  message Line {
    string sku = 1;
    uint32 qty = 2;
    Nested.Deep deep = 3;
    message Nested {
      message Deep {
        sint64 x = 1;
        fixed32 f = 2;
        sfixed64 g = 3;
        float h = 4;
        double i = 5;
        bool j = 6;
      }
    }
  }

  enum Status {
    option allow_alias = true;
    STATUS_UNKNOWN = 0;
    STATUS_OK = 1;
    STATUS_FINE = 1;
    reserved 5 to 9;
    reserved "GONE";
  }
}

enum Top {
  TOP_A = 0;
  TOP_B = 1 [deprecated = true];
}

service Shop {
  rpc Place (Order) returns (Order);
  rpc Watch (stream Order) returns (stream Order) {
    option deprecated = true;
  }
}
"#;

const LEGACY: &str = r#"syntax = "proto2";
package legacy;
message Old {
  required int32 a = 1;
  optional string b = 2 [default = "x\"y\n"];
  optional double c = 3 [default = inf];
  optional E e = 4 [default = E_TWO];
  repeated int32 d = 5 [packed = true];
  optional bytes f = 6 [default = "\001\002z"];
  optional int64 big = 7 [jstype = JS_STRING];
  extensions 100 to 199;
  enum E {
    E_ONE = 1;
    E_TWO = 2;
  }
}
extend Old {
  optional int32 ext = 100;
}
message NoPackage {
  oneof choice {
    int32 x = 1;
    Old old = 2;
  }
}
"#;

fn money_dep() -> Vec<Dependency> {
    vec![Dependency {
        reference: Reference {
            name: "common/money.proto".into(),
            subject: "money".into(),
            version: 1,
        },
        schema: MONEY.into(),
    }]
}

fn round_trip(text: &str, deps: &[Dependency]) {
    let first = ProtobufSchema::parse(text, deps).unwrap();
    let fd1 = first.descriptor_proto();
    let printed = proto_print::print(&fd1).unwrap();
    let second = ProtobufSchema::parse(&printed, deps)
        .unwrap_or_else(|e| panic!("printed text does not compile: {e}\n{printed}"));
    assert_eq!(second.descriptor_proto(), fd1, "printed:\n{printed}");
    // Printing is stable.
    assert_eq!(
        proto_print::print(&second.descriptor_proto()).unwrap(),
        printed
    );

    // The base64 descriptor is accepted as the schema and converts to the printed text.
    let b64 = base64::engine::general_purpose::STANDARD.encode(fd1.encode_to_vec());
    assert_eq!(b64, first.serialized());
    let from_b64 = ProtobufSchema::parse(&b64, deps).unwrap();
    assert!(from_b64.from_descriptor());
    assert!(!first.from_descriptor());
    assert_eq!(from_b64.canonical_string(), printed.trim());
    assert_eq!(from_b64.descriptor_proto(), fd1);
}

#[test]
fn proto3_with_imports_maps_oneofs_and_services_round_trips() {
    round_trip(SHOP, &money_dep());
    round_trip(MONEY, &[]);
}

#[test]
fn proto2_with_defaults_and_extensions_round_trips() {
    round_trip(LEGACY, &[]);
}

#[test]
fn printed_text_keeps_declarations() {
    let s = ProtobufSchema::parse(SHOP, &money_dep()).unwrap();
    let printed = proto_print::print(&s.descriptor_proto()).unwrap();
    for want in [
        "syntax = \"proto3\";",
        "package acme.shop.v1;",
        "import public \"google/protobuf/any.proto\";",
        "import \"common/money.proto\";",
        "option java_package = \"com.acme.shop\";",
        "map<string, .acme.shop.v1.Order.Line> lines = 4;",
        "oneof payment {",
        "bytes token = 6 [json_name = \"tok\"];",
        "optional string note = 7;",
        "repeated int32 codes = 3 [packed = false];",
        "reserved 20, 30 to 40, 100 to max;",
        "reserved \"old\", \"older\";",
        "rpc Watch (stream .acme.shop.v1.Order) returns (stream .acme.shop.v1.Order) {",
    ] {
        assert!(printed.contains(want), "missing {want:?} in\n{printed}");
    }
}

#[test]
fn garbage_is_still_refused() {
    for bad in ["test", "dGVzdA==", "message {", "!!!", "AAAA"] {
        assert!(ProtobufSchema::parse(bad, &[]).is_err(), "{bad} accepted");
    }
}
