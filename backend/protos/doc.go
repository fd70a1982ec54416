// Package protos holds the messages of the built-in documentation routes
// (backend.Sys): Doc, DocMsg, ProtoName, ProtoNames, ProtoDescriptor and
// ProtoDescriptors. Their protobuf package ("protos"), names and field
// numbers are Pitaya's, so Pitaya's protobuf client recognises the
// descriptors route by its types ("protos.ProtoNames" in,
// "protos.ProtoDescriptors" out) and decodes the answers. A program that
// also links Pitaya's own protos package would register these names twice:
// use these.
package protos
