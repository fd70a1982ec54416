// Package modules owns the module lifecycle of the app and holds the
// built-in Binary module.
//
// A [Module] is started with the app and stopped with it. [Lifecycle] keeps
// the modules by name in start order and runs that lifecycle: Init in order
// (a failure stops start-up with an error naming the module, and the modules
// already initialised are shut down, in reverse), AfterInit once every module
// is initialised and the server serves; on shutdown BeforeShutdown and then
// Shutdown run in reverse order, only for the modules whose Init succeeded.
// A module registered once the lifecycle has started is found by name but
// not started. The nopal App holds one Lifecycle: register modules with
// App.RegisterModule, RegisterModuleBefore and RegisterModuleAfter, and find
// them with App.GetModule.
//
// [Binary] runs a child process next to the server (a matchmaker, a sidecar),
// logs its output line by line through slog, stops it when the app stops and,
// unless told otherwise, stops the app when the child dies.
package modules
