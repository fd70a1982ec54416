// Package modules defines the lifecycle of the app's modules and holds the
// built-in Binary module.
//
// A [Module] is started with the app and stopped with it: Init runs in
// registration order (a failure stops start-up with an error naming the
// module, and the modules already initialised are shut down), AfterInit runs
// once every module is initialised and the server serves; on shutdown
// BeforeShutdown and then Shutdown run in reverse order. Register them with
// nopal's App.RegisterModule, RegisterModuleBefore and RegisterModuleAfter,
// and find them with App.GetModule.
//
// [Binary] runs a child process next to the server (a matchmaker, a sidecar),
// logs its output line by line through slog, stops it when the app stops and,
// unless told otherwise, stops the app when the child dies.
package modules
